// Helpers for engine tests: building an engine over the synthetic runner and draining streams.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/byte_tokenizer.h"
#include "engine/engine.h"
#include "engine/synthetic_model_runner.h"
#include "gtest/gtest.h"

namespace deltaserve::testing {

// A one-shot gate (absl::Notification is not visible to ThreadSanitizer without an instrumented
// Abseil, so tests use std primitives).
class Gate {
 public:
  void Open() {
    {
      std::lock_guard<std::mutex> l(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Everything a request's stream delivered.
struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<TokenLogprob> logprobs;
  int token_events = 0;
  int terminals = 0;
  bool events_after_terminal = false;
  bool timed_out = false;
  RequestEvent terminal;
};

inline Collected Drain(RequestStream& stream, absl::Duration timeout = absl::Seconds(60)) {
  Collected c;
  for (;;) {
    std::optional<RequestEvent> e = stream.Next(timeout);
    if (!e.has_value()) {
      c.timed_out = c.terminals == 0;
      break;
    }
    if (c.terminals > 0) c.events_after_terminal = true;
    if (e->finished) {
      ++c.terminals;
      c.terminal = std::move(*e);
      // Nothing may follow: Next must return at once.
      if (stream.Next(absl::ZeroDuration()).has_value()) c.events_after_terminal = true;
      break;
    }
    ++c.token_events;
    c.tokens.insert(c.tokens.end(), e->tokens.begin(), e->tokens.end());
    c.text += e->text;
    for (auto& lp : e->logprobs) c.logprobs.push_back(std::move(lp));
  }
  return c;
}

inline std::unique_ptr<Engine> MakeSyntheticEngine(SyntheticRunnerOptions options,
                                                   EngineConfig config = EngineConfig(),
                                                   std::shared_ptr<EngineObserver> observer = nullptr) {
  auto runner = SyntheticModelRunner::Create(std::move(options));
  EXPECT_TRUE(runner.ok()) << runner.status();
  auto engine = Engine::Create(config, std::move(*runner), std::make_shared<ByteTokenizer>(),
                               std::move(observer));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

inline GenerationRequest MakeRequest(const std::string& id, std::vector<int32_t> prompt,
                                     int max_new, float temperature = 0.0f, uint64_t seed = 0) {
  GenerationRequest r;
  r.id = id;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.stopping.max_new_tokens = max_new;
  r.stopping.ignore_eos = true;
  return r;
}

}  // namespace deltaserve::testing
