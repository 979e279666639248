// Engine acceptance tests on the real CPU backend (CpuModelRunner on the embedded default model,
// a hybrid GDN-2 / sliding-window model with a byte tokenizer):
//  - batch invariance: every request's output under continuous batching, chunked prefill, random
//    arrivals and preemption equals the same request run alone, token for token;
//  - swap-out and resume (forced, mid-prefill and mid-decode) give the tokens of an uninterrupted
//    run, for fp32 and bf16 state storage.
#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/engine_impl.h"
#include "engine/model_config.h"
#include "engine/runner_factory.h"
#include "engine/tokenizer.h"
#include "tests/engine/engine_test_util.h"

namespace deltaserve {
namespace {

using testing::Collected;
using testing::Drain;
using testing::MakeRequest;

const std::string kModelDir = std::string(DELTASERVE_SOURCE_DIR) + "/models/default";

// A runner wrapper that calls `hook` before each step (to force preemptions at exact points).
class HookedRunner final : public ModelRunner {
 public:
  HookedRunner(std::unique_ptr<ModelRunner> inner, std::function<void(int)> hook)
      : inner_(std::move(inner)), hook_(std::move(hook)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  StateStorage& state() override { return inner_->state(); }
  absl::Status Step(const StepBatch& batch, std::vector<SampledToken>* out) override {
    if (hook_) hook_(++steps_);
    return inner_->Step(batch, out);
  }
  int64_t max_step_tokens() const override { return inner_->max_step_tokens(); }

 private:
  std::unique_ptr<ModelRunner> inner_;
  std::function<void(int)> hook_;
  int steps_ = 0;
};

std::unique_ptr<Engine> MakeCpuEngine(int slots, EngineConfig config, StateDtype dtype,
                                      std::function<void(int)> hook = nullptr) {
  RunnerOptions ro;
  ro.backend = "cpu";
  ro.model_dir = kModelDir;
  ro.num_slots = slots;
  ro.threads = 1;
  ro.state_dtype = dtype;
  auto runner = CreateModelRunner(ro);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return nullptr;
  auto mc = ModelConfig::LoadFromDir(kModelDir);
  EXPECT_TRUE(mc.ok()) << mc.status();
  auto tok = Tokenizer::Load(kModelDir, *mc);
  EXPECT_TRUE(tok.ok()) << tok.status();
  std::unique_ptr<ModelRunner> r = std::move(*runner);
  if (hook) r = std::make_unique<HookedRunner>(std::move(r), std::move(hook));
  auto engine = Engine::Create(config, std::move(r), std::shared_ptr<const Tokenizer>(std::move(*tok)),
                               nullptr);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

Collected RunOne(Engine& engine, const GenerationRequest& r) {
  auto s = engine.Submit(r);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? Drain(**s) : Collected();
}

TEST(EngineModelTest, BatchInvarianceOnTheCpuBackend) {
  std::mt19937 gen(17);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 20; ++i) {
    // Prompts up to 100 tokens cross the 64-token attention window of the SWA layers.
    std::vector<int32_t> prompt(1 + gen() % 100);
    for (int32_t& t : prompt) t = static_cast<int32_t>(gen() % 256);
    GenerationRequest r = MakeRequest(absl::StrCat("r", i), prompt, 1 + gen() % 20);
    if (i % 2 == 1) {
      r.sampling.temperature = 0.9f;
      r.sampling.top_p = 0.95f;
      r.sampling.seed = 500 + i;
    }
    reqs.push_back(std::move(r));
  }
  std::vector<Collected> alone;
  {
    auto solo = MakeCpuEngine(1, EngineConfig(), StateDtype::kF32);
    ASSERT_NE(solo, nullptr);
    for (const auto& r : reqs) alone.push_back(RunOne(*solo, r));
  }
  EngineConfig config;
  config.prefill_chunk = 7;
  config.max_step_tokens = 32;
  config.preempt_after_steps = 4;
  config.max_waiting = 64;
  auto engine = MakeCpuEngine(5, config, StateDtype::kF32);
  ASSERT_NE(engine, nullptr);
  std::vector<std::shared_ptr<RequestStream>> streams(reqs.size());
  std::thread submitter([&] {
    std::mt19937 g(3);
    for (size_t i = 0; i < reqs.size(); ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(g() % 500));
      auto s = engine->Submit(reqs[i]);
      ASSERT_TRUE(s.ok()) << s.status();
      streams[i] = *s;
    }
  });
  submitter.join();
  for (size_t i = 0; i < reqs.size(); ++i) {
    SCOPED_TRACE(reqs[i].id);
    Collected c = Drain(*streams[i]);
    EXPECT_EQ(c.terminals, 1);
    EXPECT_EQ(c.tokens, alone[i].tokens);
    EXPECT_EQ(c.text, alone[i].text);
    EXPECT_EQ(c.terminal.finish_reason, alone[i].terminal.finish_reason);
  }
  EXPECT_GT(engine->Stats().swap_outs_total, 0);
}

class EngineModelSwapTest : public ::testing::TestWithParam<StateDtype> {};

TEST_P(EngineModelSwapTest, SwapOutAndResumeEqualsUninterruptedRun) {
  const StateDtype dtype = GetParam();
  std::vector<int32_t> prompt_a;
  for (int i = 0; i < 90; ++i) prompt_a.push_back(32 + (i * 7) % 90);
  GenerationRequest a = MakeRequest("a", prompt_a, 30, 0.8f, 11);
  GenerationRequest b = MakeRequest("b", {72, 101, 121}, 6);
  EngineConfig config;
  // The same chunking in both runs: with bf16 storage the state is rounded at every step
  // boundary, so only the swap may differ between the runs.
  config.prefill_chunk = 16;
  Collected a_alone, b_alone;
  {
    auto solo = MakeCpuEngine(1, config, dtype);
    ASSERT_NE(solo, nullptr);
    a_alone = RunOne(*solo, a);
    b_alone = RunOne(*solo, b);
  }
  config.preempt_after_steps = 1000000;  // only the forced preemptions below
  std::atomic<EngineImpl*> impl{nullptr};
  // Step 3: "a" is mid-prefill (90 tokens in chunks of 16); "b" takes the slot. Steps 20 and
  // 28: "a" is decoding.
  testing::Gate both_submitted;  // step 1 waits, so "b" is queued before the forced swaps
  auto engine = MakeCpuEngine(1, config, dtype, [&impl, &both_submitted](int step) {
    if (step == 1) both_submitted.Wait();
    if (step == 3 || step == 20 || step == 28) impl.load()->ForcePreempt("a");
  });
  ASSERT_NE(engine, nullptr);
  impl.store(static_cast<EngineImpl*>(engine.get()));
  auto sa = engine->Submit(a);
  auto sb = engine->Submit(b);
  both_submitted.Open();
  ASSERT_TRUE(sa.ok() && sb.ok());
  Collected a_run = Drain(**sa);
  Collected b_run = Drain(**sb);
  EXPECT_EQ(a_run.tokens, a_alone.tokens);
  EXPECT_EQ(b_run.tokens, b_alone.tokens);
  EXPECT_EQ(a_run.tokens.size(), 30u);
  EXPECT_GE(engine->Stats().swap_outs_total, 3);
}

INSTANTIATE_TEST_SUITE_P(StateDtypes, EngineModelSwapTest,
                         ::testing::Values(StateDtype::kF32, StateDtype::kBF16),
                         [](const ::testing::TestParamInfo<StateDtype>& info) {
                           return std::string(info.param == StateDtype::kF32 ? "f32" : "bf16");
                         });

}  // namespace
}  // namespace deltaserve
