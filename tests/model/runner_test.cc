// CpuModelRunner and CreateModelRunner on the embedded default model (models/default): greedy
// generation through the ModelRunner seam equals argmax over CpuModel's logits, the pool is sized
// by slots or by bytes, and bad requests are errors. Also the tokenizer file check.
#include <algorithm>
#include <filesystem>

#include "engine/cpu_model.h"
#include "engine/cpu_model_runner.h"
#include "engine/host_state_storage.h"
#include "engine/runner_factory.h"
#include "engine/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/test_models.h"

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

const std::string kDefaultModel = std::string(DELTASERVE_SOURCE_DIR) + "/models/default";

std::vector<int32_t> Prompt(const char* text) {
  std::vector<int32_t> t = {256};  // <bos>
  for (const char* p = text; *p; ++p) t.push_back(static_cast<unsigned char>(*p));
  return t;
}

TEST(CpuModelRunnerTest, GreedyGenerationMatchesModelArgmax) {
  RunnerOptions o;
  o.model_dir = kDefaultModel;
  o.num_slots = 3;
  o.threads = 2;
  auto runner = CreateModelRunner(o);
  ASSERT_TRUE(runner.ok()) << runner.status();
  ModelRunner& r = **runner;
  EXPECT_EQ(r.config().vocab_size, 258);
  EXPECT_EQ(r.state().num_slots(), 3);

  // Reference: CpuModel directly, argmax over the real vocabulary.
  auto model = CpuModel::Load(kDefaultModel, StateDtype::kF32, 1);
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<int64_t> slot((*model)->layout().slot_bytes() / 8 + 1);
  std::byte* s = reinterpret_cast<std::byte*>(slot.data());
  const std::vector<int32_t> prompt = Prompt("In the beginning");
  std::vector<int32_t> want;
  auto logits = (*model)->Run(s, prompt);
  ASSERT_TRUE(logits.ok());
  for (int i = 0; i < 16; ++i) {
    const auto best = std::max_element(logits->begin(), logits->begin() + r.config().vocab_size);
    want.push_back(static_cast<int32_t>(best - logits->begin()));
    logits = (*model)->Run(s, std::span<const int32_t>(&want.back(), 1));
    ASSERT_TRUE(logits.ok());
  }

  // Through the runner, in slot 2, alongside another sequence in slot 0.
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplerState st2, st0;
  st2.prompt_tokens = prompt;
  const std::vector<int32_t> other = Prompt("x");
  st0.prompt_tokens = other;
  std::vector<int32_t> got;
  std::vector<SampledToken> out;
  StepBatch b;
  b.seqs.push_back({2, prompt, true, &greedy, &st2});
  b.seqs.push_back({0, other, true, &greedy, &st0});
  ASSERT_TRUE(r.Step(b, &out).ok());
  ASSERT_EQ(out.size(), 2u);
  for (int i = 0; i < 16; ++i) {
    got.push_back(out[0].token);
    st2.generated_tokens.push_back(out[0].token);
    st0.generated_tokens.push_back(out[1].token);
    const int32_t t2 = out[0].token, t0 = out[1].token;
    StepBatch d;
    d.seqs.push_back({0, std::span<const int32_t>(&t0, 1), true, &greedy, &st0});
    d.seqs.push_back({2, std::span<const int32_t>(&t2, 1), true, &greedy, &st2});
    ASSERT_TRUE(r.Step(d, &out).ok());
    ASSERT_EQ(out.size(), 2u);
    std::swap(out[0], out[1]);
  }
  EXPECT_EQ(got, want);

  // Swap-out / restore and fork keep the state exact.
  std::vector<std::byte> saved(r.state().bytes_per_slot());
  ASSERT_TRUE(r.state().CopyToHost(2, saved).ok());
  ASSERT_TRUE(r.state().CopySlot(2, 1).ok());
  ASSERT_TRUE(r.state().Reset(2).ok());
  ASSERT_TRUE(r.state().CopyFromHost(2, saved).ok());
  const int32_t next = want.back();
  SamplerState a = st2, c = st2;
  StepBatch f;
  f.seqs.push_back({1, std::span<const int32_t>(&next, 1), true, &greedy, &a});
  f.seqs.push_back({2, std::span<const int32_t>(&next, 1), true, &greedy, &c});
  ASSERT_TRUE(r.Step(f, &out).ok());
  EXPECT_EQ(out[0].token, out[1].token);
}

TEST(CpuModelRunnerTest, RejectsBadSteps) {
  RunnerOptions o;
  o.model_dir = kDefaultModel;
  o.num_slots = 2;
  o.threads = 1;
  o.max_step_tokens = 8;
  auto runner = CreateModelRunner(o);
  ASSERT_TRUE(runner.ok()) << runner.status();
  SamplingParams greedy;
  greedy.temperature = 0;
  SamplerState st;
  std::vector<int32_t> tok = {1, 2, 3};
  std::vector<SampledToken> out;
  StepBatch b;
  b.seqs.push_back({5, tok, true, &greedy, &st});
  EXPECT_EQ((*runner)->Step(b, &out).code(), absl::StatusCode::kOutOfRange);
  b.seqs[0] = {0, tok, true, nullptr, nullptr};
  EXPECT_FALSE((*runner)->Step(b, &out).ok());
  std::vector<int32_t> many(9, 1);
  b.seqs[0] = {0, many, false, nullptr, nullptr};
  EXPECT_THAT(std::string((*runner)->Step(b, &out).message()), HasSubstr("max_step_tokens"));
  std::vector<int32_t> bad = {300};
  b.seqs[0] = {0, bad, false, nullptr, nullptr};
  EXPECT_THAT(std::string((*runner)->Step(b, &out).message()), HasSubstr("300"));
}

TEST(RunnerFactoryTest, SizesPoolAndRejectsBadOptions) {
  const StateLayout layout(*ModelConfig::LoadFromDir(kDefaultModel), StateDtype::kBF16);
  RunnerOptions o;
  o.model_dir = kDefaultModel;
  o.state_dtype = StateDtype::kBF16;
  o.pool_bytes = static_cast<int64_t>(layout.slot_bytes()) * 5 + 100;
  o.threads = 1;
  auto runner = CreateModelRunner(o);
  ASSERT_TRUE(runner.ok()) << runner.status();
  EXPECT_EQ((*runner)->state().num_slots(), 5);
  EXPECT_EQ((*runner)->state().layout().state_dtype(), StateDtype::kBF16);

  o.pool_bytes = 10;
  EXPECT_THAT(std::string(CreateModelRunner(o).status().message()),
              HasSubstr("less than one slot"));
  o.pool_bytes = 0;
  EXPECT_FALSE(CreateModelRunner(o).ok());
  o.num_slots = 1;
  o.backend = "tpu";
  EXPECT_THAT(std::string(CreateModelRunner(o).status().message()), HasSubstr("backend"));
#ifndef DELTASERVE_WITH_CUDA
  o.backend = "cuda";
  EXPECT_EQ(CreateModelRunner(o).status().code(), absl::StatusCode::kUnimplemented);
#endif
  o.backend = "cpu";
  o.model_dir = "/nonexistent";
  EXPECT_THAT(std::string(CreateModelRunner(o).status().message()), HasSubstr("config.json"));
  EXPECT_EQ(*ParseStateDtype("bf16"), StateDtype::kBF16);
  EXPECT_EQ(*ParseStateDtype("fp32"), StateDtype::kF32);
  EXPECT_FALSE(ParseStateDtype("fp8").ok());
  EXPECT_FALSE(ParseRingDtype("state")->has_value());
  EXPECT_EQ(*ParseRingDtype("bf16"), StateDtype::kBF16);
  EXPECT_EQ(*ParseRingDtype("f32"), StateDtype::kF32);
  EXPECT_FALSE(ParseRingDtype("fp8").ok());
  EXPECT_EQ(*ParsePrefillPrecision("fp32"), PrefillPrecision::kFp32);
  EXPECT_EQ(*ParsePrefillPrecision("tf32"), PrefillPrecision::kTf32);
  EXPECT_EQ(*ParsePrefillPrecision("bf16"), PrefillPrecision::kBf16);
  EXPECT_FALSE(ParsePrefillPrecision("fp16").ok());
}

TEST(RunnerFactoryTest, HostStorageChecksSlotsAndSizes) {
  const StateLayout layout(*ModelConfig::LoadFromDir(kDefaultModel), StateDtype::kF32);
  auto st = HostStateStorage::Create(layout, 2);
  ASSERT_TRUE(st.ok());
  std::vector<std::byte> buf(layout.slot_bytes() - 1);
  EXPECT_FALSE((*st)->CopyToHost(0, buf).ok());
  EXPECT_FALSE((*st)->Reset(2).ok());
  EXPECT_FALSE((*st)->CopySlot(-1, 0).ok());
  EXPECT_FALSE(HostStateStorage::Create(layout, 0).ok());
}

TEST(TokenizerFileTest, UnreadableTokenizerFileIsNamed) {
  ModelConfig c = testing::SmallPureConfig();
  c.tokenizer_type = TokenizerType::kSentencePiece;
  c.tokenizer_file = "tokenizer.model";
  const std::string dir = testing::MakeTempDir("tok");
  auto missing = Tokenizer::Load(dir, c);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("tokenizer.model"));
  testing::WriteFile(dir + "/tokenizer.model", "this is not a sentencepiece model");
  auto garbage = Tokenizer::Load(dir, c);
  ASSERT_FALSE(garbage.ok());
  EXPECT_THAT(std::string(garbage.status().message()), HasSubstr("tokenizer.model"));
}

}  // namespace
}  // namespace deltaserve
