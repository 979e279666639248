// Randomized stress test: thousands of requests from several threads with random prompt and
// output lengths, random cancels and deadlines, a small pool with preemption, and a waiting
// queue small enough to overflow. At the end no slot is in use and every accepted request got
// exactly one terminal event, consistent with what its stream delivered. Labelled `tsan`.
#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

#include "tests/engine/engine_test_util.h"

namespace deltaserve {
namespace {

using testing::Collected;
using testing::Drain;
using testing::MakeRequest;

TEST(EngineStressTest, RandomLoadEndsClean) {
  SyntheticRunnerOptions opts;
  opts.num_slots = 12;
  EngineConfig config;
  config.max_waiting = 24;
  config.prefill_chunk = 16;
  config.max_step_tokens = 64;
  config.max_batch_sequences = 12;
  config.preempt_after_steps = 8;
  config.max_swapped = 6;
  testing::Gate burst_submitted;
  std::atomic<bool> first_step{true};
  opts.step_hook = [&](const StepBatch&) {
    if (first_step.exchange(false)) burst_submitted.Wait();
    return absl::OkStatus();
  };
  auto engine = testing::MakeSyntheticEngine(opts, config);

  // A burst while the engine is held in its first step: the queue overflows deterministically
  // (12 slots + 24 waiting).
  std::vector<std::shared_ptr<RequestStream>> burst;
  int burst_rejected = 0;
  for (int i = 0; i < 60; ++i) {
    auto s = engine->Submit(MakeRequest(absl::StrCat("burst-", i), {1, 2, 3}, 5));
    if (s.ok()) {
      burst.push_back(*s);
    } else {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
      ++burst_rejected;
    }
  }
  burst_submitted.Open();
  EXPECT_GE(burst_rejected, 24);
  EXPECT_LE(burst.size(), 36u);
  for (auto& s : burst) {
    Collected c = Drain(*s);
    EXPECT_EQ(c.terminals, 1);
    EXPECT_EQ(c.terminal.finish_reason, FinishReason::kLength);
  }

  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  constexpr int kWave = 12;  // requests a thread keeps in flight
  std::atomic<int> accepted{0}, rejected{0}, cancelled{0}, expired{0}, completed{0}, stopped{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(100 + t);
      int next = 0;
      while (next < kPerThread) {
        std::vector<std::pair<GenerationRequest, std::shared_ptr<RequestStream>>> wave;
        for (int k = 0; k < kWave && next < kPerThread; ++k, ++next) {
          std::vector<int32_t> prompt(1 + gen() % 48);
          for (int32_t& x : prompt) x = static_cast<int32_t>(gen() % 258);
          GenerationRequest r = MakeRequest(absl::StrCat("t", t, "-", next),
                                            prompt, 1 + static_cast<int>(gen() % 48),
                                            (gen() % 2) ? 0.0f : 1.0f, gen());
          r.stopping.ignore_eos = gen() % 2;
          if (gen() % 5 == 0) r.stopping.stop_token_ids = {static_cast<int32_t>(gen() % 256)};
          if (gen() % 7 == 0) r.stopping.stop_strings = {"a", "xyz"};
          if (gen() % 6 == 0) {
            r.deadline = Clock::now() + std::chrono::microseconds(gen() % 3000);
          }
          auto s = engine->Submit(r);
          if (!s.ok()) {
            if (s.status().code() != absl::StatusCode::kResourceExhausted) failures++;
            rejected++;
            continue;
          }
          accepted++;
          wave.emplace_back(std::move(r), *s);
        }
        for (auto& [req, stream] : wave) {
          if (gen() % 6 == 0) engine->Cancel(req.id);
          Collected c = Drain(*stream, absl::Seconds(60));
          const RequestEvent& e = c.terminal;
          bool ok = c.terminals == 1 && !c.events_after_terminal && !c.timed_out;
          ok = ok && e.usage.prompt_tokens == static_cast<int64_t>(req.prompt_tokens.size());
          ok = ok && e.usage.generated_tokens <= req.stopping.max_new_tokens;
          switch (e.finish_reason) {
            case FinishReason::kLength:
              ok = ok && e.usage.generated_tokens == req.stopping.max_new_tokens &&
                   c.tokens.size() == static_cast<size_t>(e.usage.generated_tokens);
              completed++;
              break;
            case FinishReason::kEos:
            case FinishReason::kStop:
              ok = ok && c.tokens.size() + 1 == static_cast<size_t>(e.usage.generated_tokens);
              stopped++;
              break;
            case FinishReason::kCancelled:
              cancelled++;
              break;
            case FinishReason::kDeadline:
              ok = ok && req.deadline.has_value();
              expired++;
              break;
            case FinishReason::kError:
              ok = false;
              break;
          }
          ok = ok && c.tokens.size() <= static_cast<size_t>(e.usage.generated_tokens);
          if (!ok) {
            failures++;
            ADD_FAILURE() << req.id << ": reason " << FinishReasonName(e.finish_reason)
                          << " terminals " << c.terminals << " tokens " << c.tokens.size()
                          << " usage " << e.usage.generated_tokens << " status " << e.status;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(accepted + rejected, kThreads * kPerThread);
  EXPECT_GT(cancelled.load(), 0);
  EXPECT_GT(expired.load(), 0);
  EXPECT_GT(completed.load(), 0);
  EXPECT_GT(stopped.load(), 0);
  EXPECT_EQ(accepted.load(), completed + stopped + cancelled + expired);
  for (int i = 0; i < 5000 && engine->InFlight() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EngineStats s = engine->Stats();
  EXPECT_EQ(engine->InFlight(), 0);
  EXPECT_EQ(s.slots_used, 0);
  EXPECT_EQ(s.running_requests, 0);
  EXPECT_EQ(s.waiting_requests, 0);
  EXPECT_EQ(s.swapped_requests, 0);
  EXPECT_GT(s.swap_outs_total, 0) << "no preemption happened";
  RecordProperty("accepted", accepted.load());
  RecordProperty("rejected", rejected.load());
  RecordProperty("burst_rejected", burst_rejected);
  RecordProperty("swap_outs", static_cast<int>(s.swap_outs_total));
}

}  // namespace
}  // namespace deltaserve
