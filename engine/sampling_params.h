// SamplingParams: how one request turns logits into its next token. Validated by the server
// (ranges below) before a request reaches the engine; the engine re-checks with Validate().
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace deltaserve {

struct SamplingParams {
  float temperature = 1.0f;         // >= 0; 0 means greedy (argmax)
  int32_t top_k = 0;                // >= 0; 0 disables
  float top_p = 1.0f;               // (0, 1]; 1 disables
  float min_p = 0.0f;               // [0, 1); 0 disables; keeps p >= min_p * p_max
  float repetition_penalty = 1.0f;  // > 0; 1 disables; divides positive / multiplies negative
                                    // logits of tokens seen in prompt or output
  float presence_penalty = 0.0f;    // [-2, 2]; subtracted once from logits of generated tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; subtracted per occurrence in generated tokens
  uint64_t seed = 0;                // the same seed and inputs give the same tokens
  int32_t top_logprobs = 0;         // [0, 20]; how many top alternatives to report per token
  bool logprobs = false;            // report the sampled token's log-probability

  bool greedy() const { return temperature == 0.0f; }
  absl::Status Validate() const;
};

}  // namespace deltaserve
