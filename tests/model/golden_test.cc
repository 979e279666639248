// Golden test: the CPU model's logits of one prefill from the zero state against the float64
// NumPy reference (tools/golden.py, run by the `golden` ctest fixture), for every case in
// <build>/golden/. MODEL_SPEC.md section 7: relative error <= 1e-4.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "engine/cpu_model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/model/test_models.h"

namespace deltaserve {
namespace {

namespace fs = std::filesystem;

struct GoldenCase {
  std::vector<int32_t> tokens;
  std::vector<int64_t> shape;
  std::vector<double> logits;
};

GoldenCase ReadCase(const fs::path& dir) {
  GoldenCase g;
  nlohmann::json j = nlohmann::json::parse(testing::ReadFile((dir / "golden.json").string()));
  g.tokens = j.at("prompt_tokens").get<std::vector<int32_t>>();
  g.shape = j.at("logits_shape").get<std::vector<int64_t>>();
  const std::string raw =
      testing::ReadFile((dir / j.at("logits_file").get<std::string>()).string());
  g.logits.resize(raw.size() / sizeof(double));
  std::memcpy(g.logits.data(), raw.data(), g.logits.size() * sizeof(double));
  return g;
}

void CheckCase(const fs::path& dir, StateDtype dtype, int threads, double tol, double* err_out,
               std::optional<StateDtype> ring_dtype = std::nullopt) {
  SCOPED_TRACE(dir.string());
  GoldenCase g = ReadCase(dir);
  ASSERT_EQ(g.shape.size(), 2u);
  ASSERT_EQ(static_cast<int64_t>(g.tokens.size()), g.shape[0]);
  ASSERT_EQ(static_cast<int64_t>(g.logits.size()), g.shape[0] * g.shape[1]);
  auto model = CpuModel::Load(dir.string(), dtype, threads, ring_dtype);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->config().padded_vocab_size, g.shape[1]);
  std::vector<std::byte> slot((*model)->layout().slot_bytes() + 64);
  std::byte* s = slot.data();  // vector storage is suitably aligned for int64
  auto logits = (*model)->Run(s, g.tokens, /*all_positions=*/true);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const double err = testing::RelativeError(*logits, g.logits);
  *err_out = err;
  EXPECT_LE(err, tol);
  int64_t pos;
  std::memcpy(&pos, s + (*model)->layout().position_offset(), sizeof(pos));
  EXPECT_EQ(pos, static_cast<int64_t>(g.tokens.size()));
}

std::vector<fs::path> GoldenCases() {
  std::vector<fs::path> cases;
  const fs::path root = fs::path(DELTASERVE_BINARY_DIR) / "golden";
  if (!fs::is_directory(root)) return cases;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory() && fs::exists(e.path() / "golden.json")) cases.push_back(e.path());
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

TEST(GoldenTest, CpuModelMatchesFloat64Reference) {
  const std::vector<fs::path> cases = GoldenCases();
  ASSERT_FALSE(cases.empty()) << "no golden cases under " << DELTASERVE_BINARY_DIR
                              << "/golden (the `golden` ctest fixture writes them)";
  for (const fs::path& dir : cases) {
    double err = 0;
    CheckCase(dir, StateDtype::kF32, /*threads=*/1, 1e-4, &err);
    std::printf("golden %-24s fp32 state, 1 thread:  rel err %.3e\n", dir.filename().c_str(), err);
    CheckCase(dir, StateDtype::kF32, /*threads=*/3, 1e-4, &err);
    std::printf("golden %-24s fp32 state, 3 threads: rel err %.3e\n", dir.filename().c_str(), err);
  }
}

TEST(GoldenTest, Bf16StateStaysClose) {
  const std::vector<fs::path> cases = GoldenCases();
  ASSERT_FALSE(cases.empty());
  for (const fs::path& dir : cases) {
    // A single prefill widens the bf16 state once (zero) and rounds once at the end, and
    // attends over its own keys and values in fp32 (bf16 rings round only what they keep), so
    // the logits are those of fp32 state.
    double err = 0;
    CheckCase(dir, StateDtype::kBF16, /*threads=*/2, 1e-4, &err);
    std::printf("golden %-24s bf16 state:            rel err %.3e\n", dir.filename().c_str(), err);
    CheckCase(dir, StateDtype::kF32, /*threads=*/2, 1e-4, &err, StateDtype::kBF16);
    std::printf("golden %-24s fp32 state, bf16 rings: rel err %.3e\n", dir.filename().c_str(), err);
  }
}

}  // namespace
}  // namespace deltaserve
