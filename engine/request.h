// What a client asks of the engine and what it gets back: GenerationRequest in, a stream of
// RequestEvents out (zero or more token deltas, then exactly one terminal event).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampling_params.h"

namespace deltaserve {

using Clock = std::chrono::steady_clock;

struct StoppingParams {
  int32_t max_new_tokens = 256;          // >= 1
  bool ignore_eos = false;               // keep going past the model's EOS token
  std::vector<int32_t> stop_token_ids;   // finish when one is sampled (it is not emitted)
  std::vector<std::string> stop_strings; // finish when the text contains one; it is not emitted,
                                         // nor is anything after it
  int64_t max_total_tokens = 0;          // prompt + generated cap; 0: the model's max_context
};

struct GenerationRequest {
  std::string id;                        // unique per engine; appears on every log line
  std::vector<int32_t> prompt_tokens;    // non-empty, each < vocab_size
  SamplingParams sampling;
  StoppingParams stopping;
  std::optional<Clock::time_point> deadline;  // expire (finish reason kDeadline) after this
};

enum class FinishReason {
  kLength,     // max_new_tokens or max_total_tokens reached
  kEos,        // the model's EOS token was sampled
  kStop,       // a stop token id or stop string matched
  kCancelled,  // the client cancelled
  kDeadline,   // the deadline passed
  kError,      // the engine failed the request (status says why)
};

const char* FinishReasonName(FinishReason r);

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // best first
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
};

struct Timings {
  double queue_seconds = 0;        // submit -> admitted into a slot
  double first_token_seconds = 0;  // submit -> first generated token (0 if none)
  double total_seconds = 0;        // submit -> terminal event
};

struct RequestEvent {
  // Non-terminal: newly generated tokens and the text they complete. `text` holds only complete
  // UTF-8 and never any part of a matched or possibly-matching stop string.
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<TokenLogprob> logprobs;  // one per token, when requested

  // Terminal (exactly one per request, always last). It carries no tokens, text or logprobs:
  // everything generated arrives in non-terminal events before it. Usage counts every sampled
  // token, including an EOS or stop token that is not emitted.
  bool finished = false;
  FinishReason finish_reason = FinishReason::kLength;
  absl::Status status;  // OK unless finish_reason == kError
  Usage usage;
  Timings timings;
};

}  // namespace deltaserve
