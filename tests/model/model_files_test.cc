// Loading: config.json parsing and validation, safetensors checks, weights vs config. Every bad
// file must give a clear error naming the tensor or the field.
#include <cstring>
#include <filesystem>

#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/test_models.h"

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// ---- config.json ----------------------------------------------------------------------------

TEST(ModelConfigTest, DefaultsAreTheReference1_3B) {
  auto c = ModelConfig::FromJson(R"({"gdn2": {}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_layer, 18);
  EXPECT_EQ(c->n_embd, 2304);
  EXPECT_EQ(c->padded_vocab_size, 32000);
  EXPECT_EQ(c->gdn2.num_v_heads, 16);
  EXPECT_EQ(c->NumGdn2Layers(), 18);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->tokenizer_type, TokenizerType::kSentencePiece);
}

TEST(ModelConfigTest, RoundTripsThroughToJson) {
  ModelConfig a = testing::SmallHybridConfig();
  a.eos_token_id = -1;
  auto b = ModelConfig::FromJson(a.ToJson());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->ToJson(), a.ToJson());
  EXPECT_EQ(b->eos_token_id, -1);
  EXPECT_EQ(b->NumGdn2Layers(), 2);
  EXPECT_EQ(b->NumSwaLayers(), 2);
  EXPECT_EQ(b->gdn2.gate_act, GateActivation::kSigmoid);
  EXPECT_TRUE(b->gdn2.allow_neg_eigval);
  EXPECT_EQ(b->swa.n_query_groups, 2);
}

TEST(ModelConfigTest, DerivesPaddedVocabAndDefaultsGroups) {
  auto c = ModelConfig::FromJson(
      R"({"vocab_size": 258, "gdn2_per_layer": 2, "n_layer": 2, "gdn2": {"num_heads": 3},
          "swa": {"n_head": 6}, "bos_token_id": null})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->padded_vocab_size, 320);
  EXPECT_EQ(c->gdn2.num_v_heads, 3);
  EXPECT_EQ(c->swa.n_query_groups, 6);
  EXPECT_EQ(c->bos_token_id, -1);
}

TEST(ModelConfigTest, ErrorsNameTheKey) {
  struct Bad {
    const char* json;
    const char* want;
  } cases[] = {
      {R"({"gdn2": {"num_heads": 4, "num_v_heads": 6}})",
       "config.json: gdn2.num_v_heads (6) must be a multiple of gdn2.num_heads (4)"},
      {R"({"gdn2": {}, "n_embd": "wide"})", "n_embd must be an integer"},
      {R"({"gdn2": {}, "n_layer": 0})", "n_layer (0) must be >= 1"},
      {R"({"gdn2": {}, "vocab_size": 100, "padded_vocab_size": 100})", "padded_vocab_size (100)"},
      {R"({"gdn2": {"gate_act": "relu"}})", "gdn2.gate_act"},
      {R"({"gdn2": {"allow_neg_eigval": 1}})", "gdn2.allow_neg_eigval"},
      {R"({"n_layer": 2})", "gdn2 is required"},
      {R"({"gdn2": {}, "gdn2_per_layer": 2, "n_layer": 2})", "swa is required"},
      {R"({"gdn2": {}, "gdn2_per_layer": 0, "swa": {"n_head": 4, "n_query_groups": 3}})",
       "swa.n_head (4) must be a multiple of swa.n_query_groups (3)"},
      {R"({"gdn2": {}, "gdn2_per_layer": 0, "swa": {"rotary_percentage": 1.5}})",
       "swa.rotary_percentage"},
      {R"({"gdn2": {}, "eos_token_id": 40000})", "eos_token_id (40000)"},
      {R"({"gdn2": {}, "tokenizer": {"type": "wordpiece"}})", "tokenizer.type"},
      {R"({"gdn2": {}, "norm_eps": -1})", "norm_eps"},
      {R"({"gdn2": {"conv_size": 0}})", "gdn2.conv_size (0) must be >= 1"},
      {R"([1, 2])", "top level must be a JSON object"},
      {R"({"gdn2": {}, "n_layer": 4,})", "invalid JSON"},
  };
  for (const Bad& b : cases) {
    auto c = ModelConfig::FromJson(b.json);
    ASSERT_FALSE(c.ok()) << b.json;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Msg(c.status()), HasSubstr(b.want)) << b.json;
    EXPECT_THAT(Msg(c.status()), HasSubstr("config.json")) << b.json;
  }
}

TEST(ModelConfigTest, LoadFromDirNamesTheFile) {
  const std::string dir = testing::MakeTempDir("config_dir");
  auto missing = ModelConfig::LoadFromDir(dir);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(missing.status()), HasSubstr(dir + "/config.json"));
  testing::WriteFile(dir + "/config.json", "{\"n_layer\": ");
  auto bad = ModelConfig::LoadFromDir(dir);
  EXPECT_THAT(Msg(bad.status()), HasSubstr("invalid JSON"));
  EXPECT_THAT(Msg(bad.status()), HasSubstr(dir + "/config.json"));
}

// ---- safetensors ----------------------------------------------------------------------------

testing::RawTensor F32(const std::string& name, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  testing::RawTensor t{name, "F32", shape, std::vector<unsigned char>(n * 4)};
  for (int64_t i = 0; i < n; ++i) {
    const float v = 0.5f * static_cast<float>(i);
    std::memcpy(t.bytes.data() + 4 * i, &v, 4);
  }
  return t;
}

absl::Status OpenBytes(const std::string& name, const std::string& bytes) {
  const std::string path = testing::MakeTempDir("st_" + name) + "/model.safetensors";
  testing::WriteFile(path, bytes);
  return SafetensorsFile::Open(path).status();
}

TEST(SafetensorsTest, ReadsTypedViews) {
  testing::RawTensor bf{"b", "BF16", {3}, {}};
  for (float v : {1.0f, -2.5f, 0.15625f}) {
    const uint16_t h = FloatToBf16(v);
    bf.bytes.push_back(h & 0xff);
    bf.bytes.push_back(h >> 8);
  }
  testing::RawTensor f16{"h", "F16", {2}, {0x00, 0x3c, 0x00, 0xc1}};  // 1.0, -2.5
  const std::string path = testing::MakeTempDir("st_ok") + "/model.safetensors";
  testing::WriteFile(path, testing::SafetensorsBytes({F32("a", {2, 3}), bf, f16}));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ((*f)->tensors().size(), 3u);
  const TensorView* a = (*f)->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->ToFloatVector(), (std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f}));
  EXPECT_EQ((*f)->Find("b")->ToFloatVector(), (std::vector<float>{1.0f, -2.5f, 0.15625f}));
  EXPECT_EQ((*f)->Find("h")->ToFloatVector(), (std::vector<float>{1.0f, -2.5f}));
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
}

TEST(SafetensorsTest, TruncatedFile) {
  std::string bytes = testing::SafetensorsBytes({F32("a", {4}), F32("blk.weight", {8})});
  bytes.resize(bytes.size() - 5);
  absl::Status s = OpenBytes("trunc", bytes);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr("blk.weight"));
  EXPECT_THAT(Msg(s), HasSubstr("truncated"));
  EXPECT_THAT(Msg(OpenBytes("tiny", "abc")), HasSubstr("truncated"));
}

TEST(SafetensorsTest, HeaderLengthBeyondFile) {
  std::string bytes = testing::SafetensorsBytes({F32("a", {4})});
  bytes[0] = '\xff';
  bytes[1] = '\xff';
  bytes[2] = '\x0f';
  absl::Status s = OpenBytes("hdrlen", bytes);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr("header length"));
  EXPECT_THAT(Msg(s), HasSubstr("past the end of the file"));
}

TEST(SafetensorsTest, UnknownDtypeNamesTensorAndDtype) {
  testing::RawTensor t = F32("layer.weird", {2});
  t.dtype = "I8";
  t.bytes.resize(2);
  absl::Status s = OpenBytes("dtype", testing::SafetensorsBytes({F32("a", {1}), t}));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr("layer.weird"));
  EXPECT_THAT(Msg(s), HasSubstr("I8"));
}

TEST(SafetensorsTest, SizeMismatchOverlapAndBadJson) {
  testing::RawTensor t = F32("short", {3});
  t.shape = {4};  // header claims 16 bytes, data has 12
  absl::Status s = OpenBytes("size", testing::SafetensorsBytes({t}));
  EXPECT_THAT(Msg(s), HasSubstr("short"));
  EXPECT_THAT(Msg(s), HasSubstr("needs 16"));

  // Two tensors sharing bytes.
  const std::string header =
      R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  bytes += header + std::string(12, '\0');
  s = OpenBytes("overlap", bytes);
  EXPECT_THAT(Msg(s), HasSubstr("overlaps"));
  EXPECT_THAT(Msg(s), HasSubstr("y"));

  const std::string junk = "{\"x\": [";
  bytes = std::string(8, '\0');
  bytes[0] = static_cast<char>(junk.size());
  bytes += junk;
  EXPECT_THAT(Msg(OpenBytes("json", bytes)), HasSubstr("not valid JSON"));
  EXPECT_EQ(SafetensorsFile::Open("/nonexistent/model.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

// ---- weights vs config ----------------------------------------------------------------------

absl::Status LoadWith(const std::string& name, const ModelConfig& c,
                      const std::vector<testing::RawTensor>& tensors) {
  const std::string dir = testing::MakeTempDir("w_" + name);
  testing::WriteModelDir(dir, c, tensors);
  auto cfg = ModelConfig::LoadFromDir(dir);
  if (!cfg.ok()) return cfg.status();
  return ModelWeights::Load(*cfg, dir).status();
}

TEST(ModelWeightsTest, LoadsAllTensorsAndCountsParams) {
  const ModelConfig c = testing::SmallHybridConfig();
  const std::string dir = testing::MakeTempDir("w_ok");
  testing::WriteModelDir(dir, c, testing::RandomTensors(c, 1, "BF16"));
  auto w = ModelWeights::Load(c, dir);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ((*w)->layers().size(), 4u);
  EXPECT_TRUE((*w)->layers()[0].is_gdn2);
  EXPECT_FALSE((*w)->layers()[1].is_gdn2);
  EXPECT_EQ((*w)->layers()[0].gdn2.q_conv1d.shape, (std::vector<int64_t>{32, 1, 4}));
  EXPECT_EQ((*w)->layers()[1].swa.attn.shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ((*w)->layers()[1].swa.attn.dtype, DType::kBF16);
  int64_t want = 0, all = 0;
  for (const auto& [name, shape] : testing::TensorShapes(c)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    all += n;
    if (name.rfind("transformer.h.", 0) == 0) want += n;
  }
  EXPECT_EQ((*w)->NumNonEmbeddingParams(), want);
  EXPECT_EQ((*w)->NumParams(), all);
}

TEST(ModelWeightsTest, WrongShapeNamesTensorAndShapes) {
  const ModelConfig c = testing::SmallPureConfig();
  auto t = testing::RandomTensors(c, 1);
  for (auto& r : t) {
    if (r.name == "transformer.h.1.attn.o_norm.weight") r = F32(r.name, {31});
  }
  absl::Status s = LoadWith("shape", c, t);
  EXPECT_THAT(Msg(s), HasSubstr("transformer.h.1.attn.o_norm.weight"));
  EXPECT_THAT(Msg(s), HasSubstr("[31]"));
  EXPECT_THAT(Msg(s), HasSubstr("expected [32]"));
}

TEST(ModelWeightsTest, MissingAndUnexpectedTensors) {
  const ModelConfig c = testing::SmallPureConfig();
  auto t = testing::RandomTensors(c, 1);
  auto without = t;
  std::erase_if(without, [](const testing::RawTensor& r) {
    return r.name == "transformer.h.0.attn.dt_bias";
  });
  absl::Status s = LoadWith("missing", c, without);
  EXPECT_THAT(Msg(s), HasSubstr("missing tensor transformer.h.0.attn.dt_bias"));
  EXPECT_THAT(Msg(s), HasSubstr("[32]"));
  auto extra = t;
  extra.push_back(F32("transformer.h.0.attn.extra_gate", {2}));
  s = LoadWith("extra", c, extra);
  EXPECT_THAT(Msg(s), HasSubstr("unexpected tensor transformer.h.0.attn.extra_gate"));
}

TEST(ModelWeightsTest, ConfigContradictingTensorsNamesTheField) {
  const ModelConfig real = testing::SmallHybridConfig();
  const auto tensors = testing::RandomTensors(real, 1);
  struct Case {
    const char* name;
    void (*edit)(ModelConfig*);
    const char* want;
  } cases[] = {
      {"embd", [](ModelConfig* c) { c->n_embd = 96; }, "n_embd"},
      {"heads",
       [](ModelConfig* c) {
         c->gdn2.num_heads = 1;
         c->gdn2.num_v_heads = 1;
       },
       "gdn2.num_heads"},
      {"vheads", [](ModelConfig* c) { c->gdn2.num_v_heads = 4; }, "gdn2.num_v_heads"},
      {"conv", [](ModelConfig* c) { c->gdn2.conv_size = 3; }, "gdn2.conv_size"},
      {"inter", [](ModelConfig* c) { c->intermediate_size = 128; }, "intermediate_size"},
      {"vocab",
       [](ModelConfig* c) {
         c->vocab_size = 1000;
         c->padded_vocab_size = 1024;
       },
       "padded_vocab_size"},
      {"swa", [](ModelConfig* c) { c->swa.n_query_groups = 4; }, "swa.n_query_groups"},
      {"layers_less", [](ModelConfig* c) { c->n_layer = 2; }, "n_layer"},
      {"layers_more", [](ModelConfig* c) { c->n_layer = 6; }, "n_layer"},
      {"mixers", [](ModelConfig* c) { c->gdn2_per_layer = 1; }, "gdn2_per_layer"},
  };
  for (const Case& k : cases) {
    ModelConfig c = real;
    k.edit(&c);
    absl::Status s = LoadWith(k.name, c, tensors);
    ASSERT_FALSE(s.ok()) << k.name;
    EXPECT_THAT(Msg(s), HasSubstr(k.want)) << k.name;
    EXPECT_THAT(Msg(s), HasSubstr("transformer.")) << k.name;
  }
}

}  // namespace
}  // namespace deltaserve
