// Non-embedding parameter counts of the two reference 1.3B configurations (MODEL_SPEC.md
// section 4), loaded from the bf16 model directories the `large_models` fixture writes.
#include <filesystem>

#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

void Check(const char* name, int64_t want, int want_gdn2_layers) {
  const std::string dir = std::string(DELTASERVE_BINARY_DIR) + "/large_models/" + name;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " is missing (fixture large_models)";
  auto config = ModelConfig::LoadFromDir(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto w = ModelWeights::Load(*config, dir);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->NumNonEmbeddingParams(), want) << name;
  EXPECT_EQ(config->NumGdn2Layers(), want_gdn2_layers);
  EXPECT_EQ((*w)->wte().dtype, DType::kBF16);
}

TEST(ParamCountTest, Gdn2_1_3B) { Check("gdn2_1.3B", 1302638112, 18); }
TEST(ParamCountTest, SwaGdn2_1_3B) { Check("swa_gdn2_1.3B", 1300314384, 9); }

}  // namespace
}  // namespace deltaserve
