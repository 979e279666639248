// EventStream implementation (see event_stream.h).
#include "engine/event_stream.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace deltaserve {

std::optional<RequestEvent> EventStream::Next(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (terminal_taken_) return std::nullopt;
  if (queue_.empty() && timeout > absl::ZeroDuration()) {
    consumer_waiting_ = true;
    auto ready = [this] { return !queue_.empty(); };
    if (timeout == absl::InfiniteDuration()) {
      cv_.wait(lock, ready);
    } else {
      // Capped so that the deadline cannot overflow the clock.
      const auto wait = absl::ToChronoNanoseconds(std::min(timeout, absl::Hours(24 * 365)));
      cv_.wait_for(lock, wait, ready);
    }
    consumer_waiting_ = false;
  }
  if (queue_.empty()) return std::nullopt;
  RequestEvent event = std::move(queue_.front());
  queue_.erase(queue_.begin());
  if (event.finished) terminal_taken_ = true;
  return event;
}

void EventStream::PushDelta(RequestEvent& delta) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!queue_.empty() && !queue_.back().finished) {
    RequestEvent& back = queue_.back();
    back.tokens.insert(back.tokens.end(), delta.tokens.begin(), delta.tokens.end());
    back.text.append(delta.text);
    back.logprobs.insert(back.logprobs.end(), std::make_move_iterator(delta.logprobs.begin()),
                         std::make_move_iterator(delta.logprobs.end()));
    delta.tokens.clear();
    delta.text.clear();
    delta.logprobs.clear();
    return;
  }
  queue_.push_back(std::move(delta));
  delta = RequestEvent();
  const bool wake = consumer_waiting_;
  lock.unlock();
  if (wake) cv_.notify_one();
}

void EventStream::PushTerminal(RequestEvent terminal) {
  terminal.finished = true;
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(std::move(terminal));
  const bool wake = consumer_waiting_;
  lock.unlock();
  if (wake) cv_.notify_one();
}

}  // namespace deltaserve
