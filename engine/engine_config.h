// EngineConfig: the engine's scheduling knobs. Defaults in comments; Validate() states the limits.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace deltaserve {

struct EngineConfig {
  int max_waiting = 1024;           // requests queued for a slot beyond which Submit fails (>= 0)
  int64_t max_step_tokens = 2048;   // token budget of one step: decodes + prefill chunks (>= 1)
  int64_t prefill_chunk = 512;      // largest prompt chunk a sequence feeds in one step (>= 1)
  int max_batch_sequences = 256;    // sequences in one step (>= 1)
  bool enable_swap = true;          // preempt (swap out to host) when the pool is under pressure
  int64_t max_new_tokens_cap = 1 << 16;  // upper bound on a request's max_new_tokens

  absl::Status Validate() const;
};

}  // namespace deltaserve
