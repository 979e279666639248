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
  // Preemption (when enable_swap): once the pool is full and a request has waited this many
  // engine iterations for a slot, the running request that has held its slot for at least this
  // many iterations and has the most remaining work (ties: newest) is swapped out to host
  // memory for it; swapped requests resume, in arrival order, ahead of newer ones (>= 1).
  int64_t preempt_after_steps = 256;
  int max_swapped = 64;             // most requests swapped out at once, each holding one slot's
                                    // bytes in host memory (gdn2_1.3B: ~20 MB) (>= 0)

  absl::Status Validate() const;
};

}  // namespace deltaserve
