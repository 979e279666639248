// EventStream: the RequestStream the engine hands to a client. The engine thread produces, any
// one client thread consumes.
//
// Token deltas that the consumer has not taken yet are merged into one pending event (tokens,
// text and logprobs appended), so a slow consumer costs the engine no queue growth and at most
// one wake-up per step; the terminal event is always separate and last.
//
// Thread-safety: all methods are thread-safe; producer methods are called only by the engine.
// (std::mutex rather than absl::Mutex: ThreadSanitizer sees through it without an instrumented
// Abseil build.)
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "engine/engine.h"

namespace deltaserve {

class EventStream final : public RequestStream {
 public:
  explicit EventStream(std::string id) : id_(std::move(id)) {}

  std::optional<RequestEvent> Next(absl::Duration timeout) override;
  const std::string& id() const override { return id_; }

  // Producer side (engine thread). `delta` must be non-terminal; it is moved from.
  void PushDelta(RequestEvent& delta);
  // Pushes the terminal event; nothing may be pushed after it.
  void PushTerminal(RequestEvent terminal);

  // Set by Engine::Cancel, read by the engine thread.
  void MarkCancelled() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  const std::string id_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestEvent> queue_ ABSL_GUARDED_BY(mu_);  // at most: one delta, one terminal
  bool terminal_taken_ ABSL_GUARDED_BY(mu_) = false;
  bool consumer_waiting_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace deltaserve
