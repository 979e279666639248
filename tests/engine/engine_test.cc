// Engine tests over the synthetic runner (a deterministic model whose output depends on the whole
// token history kept in the slot): greedy output against a direct computation, batch invariance
// under continuous batching / chunked prefill / random arrivals / preemption, swap-out and resume,
// stop conditions, logprobs, cancellation, deadlines, queue overflow, runner failures, validation
// and shutdown. Labelled `tsan`: also run under ThreadSanitizer.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/engine_impl.h"
#include "engine/text_streamer.h"
#include "tests/engine/engine_test_util.h"

namespace deltaserve {
namespace {

using testing::Collected;
using testing::Drain;
using testing::MakeRequest;
using testing::MakeSyntheticEngine;

// Greedy continuation computed directly from the synthetic model, without the engine.
std::vector<int32_t> DirectGreedy(const SyntheticRunnerOptions& opts, std::vector<int32_t> prompt,
                                  int n) {
  auto runner = SyntheticModelRunner::Create(opts);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = (*runner)->LogitsAfter(prompt);
    const int32_t t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) -
                                           logits.begin());
    out.push_back(t);
    prompt.push_back(t);
  }
  return out;
}

std::string TextOf(const std::vector<int32_t>& tokens) {
  ByteTokenizer tok;
  Utf8Assembler a;
  std::string s;
  for (int32_t t : tokens) a.Append(tok.TokenBytes(t), &s);
  a.Flush(&s);
  return s;
}

void WaitIdle(Engine& engine) {
  for (int i = 0; i < 5000 && (engine.InFlight() != 0 || engine.Stats().slots_used != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(engine.InFlight(), 0);
  EXPECT_EQ(engine.Stats().slots_used, 0);
}

Collected RunOne(Engine& engine, GenerationRequest r) {
  auto stream = engine.Submit(std::move(r));
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (!stream.ok()) return Collected();
  return Drain(**stream);
}

TEST(EngineTest, GreedyMatchesDirectComputation) {
  SyntheticRunnerOptions opts;
  auto engine = MakeSyntheticEngine(opts);
  Collected c = RunOne(*engine, MakeRequest("a", {72, 105, 33}, 24));
  EXPECT_EQ(c.terminals, 1);
  EXPECT_FALSE(c.events_after_terminal);
  EXPECT_EQ(c.tokens, DirectGreedy(opts, {72, 105, 33}, 24));
  EXPECT_EQ(c.text, TextOf(c.tokens));
  EXPECT_EQ(c.terminal.finish_reason, FinishReason::kLength);
  EXPECT_TRUE(c.terminal.status.ok());
  EXPECT_TRUE(c.terminal.tokens.empty());
  EXPECT_EQ(c.terminal.usage.prompt_tokens, 3);
  EXPECT_EQ(c.terminal.usage.generated_tokens, 24);
  const Timings& t = c.terminal.timings;
  EXPECT_GE(t.queue_seconds, 0.0);
  EXPECT_GE(t.first_token_seconds, t.queue_seconds);
  EXPECT_GE(t.total_seconds, t.first_token_seconds);
  WaitIdle(*engine);
}

struct Job {
  GenerationRequest request;
  Collected alone;
  Collected batched;
};

std::vector<Job> RandomJobs(int n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<Job> jobs(n);
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> prompt(1 + gen() % 60);
    for (int32_t& t : prompt) t = static_cast<int32_t>(gen() % 256);
    const int max_new = 1 + static_cast<int>(gen() % 40);
    GenerationRequest r = MakeRequest(absl::StrCat("job", i), prompt, max_new);
    if (i % 3 == 1) {
      r.sampling.temperature = 0.8f;
      r.sampling.top_p = 0.9f;
      r.sampling.seed = 1000 + i;
    } else if (i % 3 == 2) {
      r.sampling.temperature = 1.2f;
      r.sampling.top_k = 20;
      r.sampling.repetition_penalty = 1.3f;
      r.sampling.seed = 7;
      r.sampling.top_logprobs = 2;
    }
    jobs[i].request = std::move(r);
  }
  return jobs;
}

class BatchInvarianceTest : public ::testing::TestWithParam<bool> {};

TEST_P(BatchInvarianceTest, EachRequestEqualsItsSoloRun) {
  const bool with_preemption = GetParam();
  std::vector<Job> jobs = RandomJobs(48, with_preemption ? 2 : 1);
  SyntheticRunnerOptions opts;
  {
    auto solo = MakeSyntheticEngine(opts);
    for (Job& j : jobs) j.alone = RunOne(*solo, j.request);
  }
  EngineConfig config;
  config.prefill_chunk = 5;
  config.max_step_tokens = 24;
  config.max_waiting = 100;
  config.preempt_after_steps = with_preemption ? 3 : 1000000;
  opts.num_slots = 6;
  std::atomic<int> steps{0};
  opts.step_hook = [&steps](const StepBatch&) {
    steps.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::microseconds(100));  // lets a queue build up
    return absl::OkStatus();
  };
  auto engine = MakeSyntheticEngine(opts, config);
  std::vector<std::shared_ptr<RequestStream>> streams(jobs.size());
  std::thread submitter([&] {
    std::mt19937 gen(5);
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(gen() % 400));
      auto s = engine->Submit(jobs[i].request);
      ASSERT_TRUE(s.ok()) << s.status();
      streams[i] = *s;
    }
  });
  submitter.join();
  for (size_t i = 0; i < jobs.size(); ++i) jobs[i].batched = Drain(*streams[i]);
  for (const Job& j : jobs) {
    SCOPED_TRACE(j.request.id);
    EXPECT_EQ(j.batched.terminals, 1);
    EXPECT_EQ(j.batched.tokens, j.alone.tokens);
    EXPECT_EQ(j.batched.text, j.alone.text);
    EXPECT_EQ(j.batched.terminal.finish_reason, j.alone.terminal.finish_reason);
    ASSERT_EQ(j.batched.logprobs.size(), j.alone.logprobs.size());
    for (size_t k = 0; k < j.alone.logprobs.size(); ++k) {
      EXPECT_EQ(j.batched.logprobs[k].logprob, j.alone.logprobs[k].logprob);
      EXPECT_EQ(j.batched.logprobs[k].top, j.alone.logprobs[k].top);
    }
  }
  if (with_preemption) {
    EXPECT_GT(engine->Stats().swap_outs_total, 0);
  }
  WaitIdle(*engine);
}

INSTANTIATE_TEST_SUITE_P(Preemption, BatchInvarianceTest, ::testing::Bool());

TEST(EngineTest, ForcedSwapOutAndResumeGiveTheSameTokens) {
  SyntheticRunnerOptions opts;
  GenerationRequest a = MakeRequest("a", std::vector<int32_t>(30, 65), 40, 0.9f, 77);
  GenerationRequest b = MakeRequest("b", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 10, 0.7f, 3);
  Collected a_alone, b_alone;
  {
    auto solo = MakeSyntheticEngine(opts);
    a_alone = RunOne(*solo, a);
    b_alone = RunOne(*solo, b);
  }
  EngineConfig config;
  config.prefill_chunk = 8;
  config.preempt_after_steps = 1000000;  // only forced preemptions
  opts.num_slots = 1;
  std::atomic<EngineImpl*> impl{nullptr};
  std::atomic<int> step{0};
  testing::Gate both_submitted;  // step 1 waits, so "b" is queued before the forced swaps
  opts.step_hook = [&](const StepBatch&) {
    const int n = ++step;
    if (n == 1) both_submitted.Wait();
    // Step 2: "a" is mid-prefill (30 tokens in chunks of 8), and "b" takes its slot. Steps 20
    // and 30: "a" is decoding (resumed after "b" finished at step 13).
    if (n == 2 || n == 20 || n == 30) impl.load()->ForcePreempt("a");
    return absl::OkStatus();
  };
  auto engine = MakeSyntheticEngine(opts, config);
  impl.store(static_cast<EngineImpl*>(engine.get()));
  auto sa = engine->Submit(a);
  auto sb = engine->Submit(b);
  both_submitted.Open();
  ASSERT_TRUE(sa.ok() && sb.ok());
  Collected a_run = Drain(**sa);
  Collected b_run = Drain(**sb);
  EXPECT_EQ(a_run.tokens, a_alone.tokens);
  EXPECT_EQ(b_run.tokens, b_alone.tokens);
  EXPECT_EQ(a_run.terminal.usage.generated_tokens, 40);
  EXPECT_GE(engine->Stats().swap_outs_total, 3);
  EXPECT_EQ(engine->Stats().swapped_requests, 0);
  WaitIdle(*engine);
}

TEST(EngineTest, StopTokenIdsEosAndIgnoreEos) {
  SyntheticRunnerOptions opts;
  auto engine = MakeSyntheticEngine(opts);
  Collected full = RunOne(*engine, MakeRequest("full", {10, 20, 30}, 40));
  ASSERT_EQ(full.tokens.size(), 40u);
  const int32_t x = full.tokens[12];
  const size_t first = std::find(full.tokens.begin(), full.tokens.end(), x) - full.tokens.begin();
  const std::vector<int32_t> before(full.tokens.begin(), full.tokens.begin() + first);

  GenerationRequest r = MakeRequest("stop", {10, 20, 30}, 40);
  r.stopping.stop_token_ids = {x};
  Collected stopped = RunOne(*engine, r);
  EXPECT_EQ(stopped.tokens, before);
  EXPECT_EQ(stopped.terminal.finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.terminal.usage.generated_tokens, static_cast<int64_t>(first + 1));

  // The same token as the model's EOS.
  SyntheticRunnerOptions eos_opts = opts;
  eos_opts.eos_token_id = x;
  auto eos_engine = MakeSyntheticEngine(eos_opts);
  GenerationRequest e = MakeRequest("eos", {10, 20, 30}, 40);
  e.stopping.ignore_eos = false;
  Collected eos = RunOne(*eos_engine, e);
  EXPECT_EQ(eos.tokens, before);
  EXPECT_EQ(eos.terminal.finish_reason, FinishReason::kEos);
  e.stopping.ignore_eos = true;
  Collected ignored = RunOne(*eos_engine, e);
  EXPECT_EQ(ignored.tokens, full.tokens);
  EXPECT_EQ(ignored.terminal.finish_reason, FinishReason::kLength);
}

TEST(EngineTest, StopStringAcrossTokensIsNotEmitted) {
  SyntheticRunnerOptions opts;
  auto engine = MakeSyntheticEngine(opts);
  Collected full = RunOne(*engine, MakeRequest("full", {1, 2, 3}, 200));
  // Three consecutive printable ASCII tokens make a stop string spanning token boundaries.
  std::string stop;
  size_t at = 0;
  for (size_t i = 5; i + 3 <= full.tokens.size(); ++i) {
    bool ok = true;
    for (size_t k = i; k < i + 3; ++k) ok = ok && full.tokens[k] >= 0x21 && full.tokens[k] < 0x7f;
    if (ok) {
      for (size_t k = i; k < i + 3; ++k) stop += static_cast<char>(full.tokens[k]);
      at = i;
      break;
    }
  }
  ASSERT_EQ(stop.size(), 3u) << "no ASCII run in the synthetic output";
  GenerationRequest r = MakeRequest("stop", {1, 2, 3}, 200);
  r.stopping.stop_strings = {"never-seen-\xE2\x98\x83", stop};
  Collected c = RunOne(*engine, r);
  EXPECT_EQ(c.terminal.finish_reason, FinishReason::kStop);
  EXPECT_EQ(c.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_EQ(c.text.find(stop), std::string::npos);
  EXPECT_LE(c.tokens.size(), at + 2);
  EXPECT_TRUE(std::equal(c.tokens.begin(), c.tokens.end(), full.tokens.begin()));
}

TEST(EngineTest, TotalLengthCap) {
  auto engine = MakeSyntheticEngine(SyntheticRunnerOptions());
  GenerationRequest r = MakeRequest("cap", std::vector<int32_t>(10, 7), 100);
  r.stopping.max_total_tokens = 15;
  Collected c = RunOne(*engine, r);
  EXPECT_EQ(c.tokens.size(), 5u);
  EXPECT_EQ(c.terminal.finish_reason, FinishReason::kLength);
  r.id = "too-long";
  r.stopping.max_total_tokens = 10;
  EXPECT_EQ(engine->Submit(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EngineTest, LogprobsOfTheSampledTokens) {
  SyntheticRunnerOptions opts;
  auto engine = MakeSyntheticEngine(opts);
  GenerationRequest r = MakeRequest("lp", {5, 6}, 8);
  r.sampling.logprobs = true;
  r.sampling.top_logprobs = 3;
  Collected c = RunOne(*engine, r);
  ASSERT_EQ(c.logprobs.size(), 8u);
  auto runner = SyntheticModelRunner::Create(opts);
  std::vector<int32_t> history = {5, 6};
  for (size_t i = 0; i < 8; ++i) {
    const std::vector<float> l = (*runner)->LogitsAfter(history);
    double m = *std::max_element(l.begin(), l.end()), s = 0;
    for (float v : l) s += std::exp(v - m);
    const int32_t t = c.tokens[i];
    EXPECT_EQ(c.logprobs[i].token, t);
    EXPECT_NEAR(c.logprobs[i].logprob, l[t] - m - std::log(s), 1e-4);
    ASSERT_EQ(c.logprobs[i].top.size(), 3u);
    EXPECT_EQ(c.logprobs[i].top[0].first, t);  // greedy
    EXPECT_GE(c.logprobs[i].top[0].second, c.logprobs[i].top[1].second);
    EXPECT_GE(c.logprobs[i].top[1].second, c.logprobs[i].top[2].second);
    history.push_back(t);
  }
}

TEST(EngineTest, CancelReleasesTheSlot) {
  SyntheticRunnerOptions opts;
  opts.step_hook = [](const StepBatch&) {
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    return absl::OkStatus();
  };
  auto engine = MakeSyntheticEngine(opts);
  auto s = engine->Submit(MakeRequest("long", {1}, 60000));
  ASSERT_TRUE(s.ok());
  std::optional<RequestEvent> first = (*s)->Next(absl::Seconds(30));
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->finished);
  EXPECT_EQ(engine->Stats().slots_used, 1);
  engine->Cancel("long");
  engine->Cancel("unknown-id");  // ignored
  Collected rest = Drain(**s);
  EXPECT_EQ(rest.terminals, 1);
  EXPECT_EQ(rest.terminal.finish_reason, FinishReason::kCancelled);
  EXPECT_LT(rest.terminal.usage.generated_tokens, 60000);
  WaitIdle(*engine);
}

TEST(EngineTest, DeadlinesForRunningAndQueuedRequests) {
  SyntheticRunnerOptions opts;
  opts.num_slots = 1;
  opts.step_hook = [](const StepBatch&) {
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    return absl::OkStatus();
  };
  EngineConfig config;
  config.enable_swap = false;
  auto engine = MakeSyntheticEngine(opts, config);
  // "holder" keeps the only slot until cancelled, so "queued" expires while waiting.
  auto holder = engine->Submit(MakeRequest("holder", {1}, 60000));
  ASSERT_TRUE(holder.ok());
  GenerationRequest queued = MakeRequest("queued", {2}, 10);
  queued.deadline = Clock::now() + std::chrono::milliseconds(10);
  auto sq = engine->Submit(queued);
  ASSERT_TRUE(sq.ok());
  Collected q = Drain(**sq);
  EXPECT_EQ(q.terminal.finish_reason, FinishReason::kDeadline);
  EXPECT_EQ(q.terminal.usage.generated_tokens, 0);
  EXPECT_EQ(q.terminal.timings.first_token_seconds, 0.0);
  engine->Cancel("holder");
  EXPECT_EQ(Drain(**holder).terminal.finish_reason, FinishReason::kCancelled);

  GenerationRequest running = MakeRequest("running", {1}, 60000);
  running.deadline = Clock::now() + std::chrono::milliseconds(50);
  auto sr = engine->Submit(running);
  ASSERT_TRUE(sr.ok());
  Collected r = Drain(**sr);
  EXPECT_EQ(r.terminal.finish_reason, FinishReason::kDeadline);
  EXPECT_LT(r.terminal.usage.generated_tokens, 60000);
  EXPECT_GE(r.terminal.timings.total_seconds, 0.045);  // the deadline was set before Submit
  WaitIdle(*engine);
}

class CountingObserver : public EngineObserver {
 public:
  void OnStep(const StepReport& s) override {
    steps++;
    generated += s.generated_tokens;
    if (s.engine_seconds < 0 || s.runner_seconds < 0) bad_times++;
  }
  void OnInterTokenLatency(double) override { inter_token++; }
  void OnRequestAdmitted(const std::string&, double q) override {
    admitted++;
    if (q < 0) bad_times++;
  }
  void OnRequestFinished(const RequestReport& r) override {
    finished++;
    finished_generated += r.usage.generated_tokens;
  }
  void OnRequestRejected(const std::string&, const absl::Status& s) override {
    rejected++;
    last_rejection = s.code();
  }
  // Written on the engine thread, read by the test after the engine is shut down.
  int64_t steps = 0, generated = 0, inter_token = 0, admitted = 0, finished = 0;
  int64_t finished_generated = 0, rejected = 0, bad_times = 0;
  absl::StatusCode last_rejection = absl::StatusCode::kOk;
};

TEST(EngineTest, QueueOverflowIsResourceExhausted) {
  SyntheticRunnerOptions opts;
  opts.num_slots = 2;
  testing::Gate release;
  opts.step_hook = [&release](const StepBatch&) {
    release.Wait();
    return absl::OkStatus();
  };
  EngineConfig config;
  config.max_waiting = 3;
  auto observer = std::make_shared<CountingObserver>();
  auto engine = MakeSyntheticEngine(opts, config, observer);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 5; ++i) {
    auto s = engine->Submit(MakeRequest(absl::StrCat("r", i), {1, 2}, 3));
    ASSERT_TRUE(s.ok()) << i << ": " << s.status();
    streams.push_back(*s);
  }
  auto over = engine->Submit(MakeRequest("over", {1, 2}, 3));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(engine->InFlight(), 5);
  release.Open();
  for (auto& s : streams) {
    Collected c = Drain(*s);
    EXPECT_EQ(c.terminal.finish_reason, FinishReason::kLength);
    EXPECT_EQ(c.tokens.size(), 3u);
  }
  WaitIdle(*engine);
  // Once drained, there is room again.
  Collected again = RunOne(*engine, MakeRequest("over", {1, 2}, 3));
  EXPECT_EQ(again.terminal.finish_reason, FinishReason::kLength);
  engine->Shutdown();
  EXPECT_EQ(observer->rejected, 1);
  EXPECT_EQ(observer->last_rejection, absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(observer->admitted, 6);
  EXPECT_EQ(observer->finished, 6);
  EXPECT_EQ(observer->finished_generated, 18);
  EXPECT_EQ(observer->generated, 18);
  EXPECT_EQ(observer->inter_token, 12);
  EXPECT_EQ(observer->bad_times, 0);
}

TEST(EngineTest, RunnerFailureFailsTheBatchAndTheEngineGoesOn) {
  SyntheticRunnerOptions opts;
  std::atomic<int> step{0};
  opts.step_hook = [&step](const StepBatch&) {
    if (++step == 3) return absl::InternalError("injected device fault");
    return absl::OkStatus();
  };
  auto engine = MakeSyntheticEngine(opts);
  Collected failed = RunOne(*engine, MakeRequest("fails", {1, 2, 3}, 10));
  EXPECT_EQ(failed.terminal.finish_reason, FinishReason::kError);
  EXPECT_NE(failed.terminal.status.message().find("injected device fault"), std::string::npos);
  EXPECT_EQ(failed.tokens.size(), 2u);  // steps 1 and 2 produced tokens
  WaitIdle(*engine);
  Collected ok = RunOne(*engine, MakeRequest("works", {1, 2, 3}, 10));
  EXPECT_EQ(ok.terminal.finish_reason, FinishReason::kLength);
  // A fresh slot: the output equals the first run's prefix continued normally.
  SyntheticRunnerOptions plain;
  EXPECT_EQ(ok.tokens, DirectGreedy(plain, {1, 2, 3}, 10));
  WaitIdle(*engine);
}

TEST(EngineTest, SubmitValidation) {
  auto engine = MakeSyntheticEngine(SyntheticRunnerOptions());
  auto code = [&](GenerationRequest r) { return engine->Submit(std::move(r)).status(); };
  EXPECT_EQ(code(MakeRequest("", {1}, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(MakeRequest("e", {}, 1)).code(), absl::StatusCode::kInvalidArgument);
  absl::Status s = code(MakeRequest("v", {1, 258}, 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("prompt_tokens[1]"), std::string::npos);
  GenerationRequest t = MakeRequest("t", {1}, 1);
  t.sampling.temperature = -1;
  EXPECT_NE(code(t).message().find("temperature"), std::string::npos);
  EXPECT_EQ(code(MakeRequest("m", {1}, 0)).code(), absl::StatusCode::kInvalidArgument);
  GenerationRequest st = MakeRequest("st", {1}, 1);
  st.stopping.stop_strings = {""};
  EXPECT_NE(code(st).message().find("stop_strings[0]"), std::string::npos);
  GenerationRequest si = MakeRequest("si", {1}, 1);
  si.stopping.stop_token_ids = {-1};
  EXPECT_NE(code(si).message().find("stop_token_ids[0]"), std::string::npos);

  // Duplicate ids while in flight; reusable afterwards.
  SyntheticRunnerOptions slow;
  testing::Gate release;
  slow.step_hook = [&release](const StepBatch&) {
    release.Wait();
    return absl::OkStatus();
  };
  auto e2 = MakeSyntheticEngine(slow);
  auto first = e2->Submit(MakeRequest("dup", {1}, 2));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(e2->Submit(MakeRequest("dup", {1}, 2)).status().code(),
            absl::StatusCode::kAlreadyExists);
  release.Open();
  Drain(**first);
  WaitIdle(*e2);
  EXPECT_TRUE(e2->Submit(MakeRequest("dup", {1}, 2)).ok());
}

TEST(EngineTest, StopAdmittingAndShutdownCancelInFlight) {
  SyntheticRunnerOptions opts;
  opts.num_slots = 2;
  opts.step_hook = [](const StepBatch&) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    return absl::OkStatus();
  };
  auto engine = MakeSyntheticEngine(opts);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    auto s = engine->Submit(MakeRequest(absl::StrCat("s", i), {3}, 60000));
    ASSERT_TRUE(s.ok());
    streams.push_back(*s);
  }
  EXPECT_TRUE(engine->Stats().admitting);
  engine->StopAdmitting();
  EXPECT_FALSE(engine->Stats().admitting);
  EXPECT_EQ(engine->Submit(MakeRequest("late", {3}, 1)).status().code(),
            absl::StatusCode::kUnavailable);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  engine->Shutdown();
  engine->Shutdown();  // idempotent
  for (auto& s : streams) {
    Collected c = Drain(*s, absl::Seconds(5));
    EXPECT_EQ(c.terminals, 1);
    EXPECT_EQ(c.terminal.finish_reason, FinishReason::kCancelled);
  }
  EXPECT_EQ(engine->InFlight(), 0);
  EXPECT_EQ(engine->Stats().slots_used, 0);
}

TEST(EngineTest, StatsReportThePool) {
  SyntheticRunnerOptions opts;
  opts.num_slots = 3;
  testing::Gate release;
  std::atomic<Engine*> engine_ptr{nullptr};
  std::atomic<int> step{0};
  EngineStats at_step2;  // written by the engine thread in step 2, read after the streams end
  opts.step_hook = [&](const StepBatch& batch) {
    const int n = ++step;
    if (n == 1) release.Wait();
    // Every request was submitted before step 1 ended, so step 2 sees all five.
    if (n == 2) at_step2 = engine_ptr.load()->Stats();
    return absl::OkStatus();
  };
  auto engine = MakeSyntheticEngine(opts);
  engine_ptr.store(engine.get());
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 5; ++i) {
    streams.push_back(*engine->Submit(MakeRequest(absl::StrCat("q", i), {1}, 20)));
  }
  EXPECT_EQ(engine->InFlight(), 5);
  release.Open();
  for (auto& st : streams) Drain(*st);
  EXPECT_EQ(at_step2.slots_total, 3);
  EXPECT_EQ(at_step2.slots_used, 3);
  EXPECT_EQ(at_step2.running_requests, 3);
  EXPECT_EQ(at_step2.waiting_requests, 2);
  EXPECT_GT(at_step2.bytes_per_slot, 0u);
  WaitIdle(*engine);
  EngineStats s = engine->Stats();
  EXPECT_EQ(s.running_requests, 0);
  EXPECT_EQ(s.waiting_requests, 0);
  EXPECT_GE(s.steps_total, 2);
}

}  // namespace
}  // namespace deltaserve
