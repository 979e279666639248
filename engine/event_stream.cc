// EventStream implementation (see event_stream.h).
#include "engine/event_stream.h"

#include <iterator>
#include <utility>

namespace deltaserve {

std::optional<RequestEvent> EventStream::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (terminal_taken_) return std::nullopt;
  if (queue_.empty() &&
      !mu_.AwaitWithTimeout(absl::Condition(this, &EventStream::HasEvent), timeout)) {
    return std::nullopt;
  }
  RequestEvent event = std::move(queue_.front());
  queue_.erase(queue_.begin());
  if (event.finished) terminal_taken_ = true;
  return event;
}

void EventStream::PushDelta(RequestEvent& delta) {
  absl::MutexLock lock(&mu_);
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
}

void EventStream::PushTerminal(RequestEvent terminal) {
  terminal.finished = true;
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(terminal));
}

}  // namespace deltaserve
