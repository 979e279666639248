// ModelRunner: the seam between the engine (scheduling, bookkeeping) and a backend (CPU, CUDA).
//
// Given a step batch -- per sequence: its slot, the new tokens to feed (a prompt chunk, or the
// one token sampled last step), and whether to sample a token after the last one -- the runner
// advances those slots' states and returns one SampledToken for every sequence with `sample`
// set, in batch order. Sampling happens inside the runner so that on a GPU the logits never cross
// to the host.
//
// Contract:
//  - Slots in one batch are distinct; a slot's state continues exactly where its previous step
//    stopped (prefill of T tokens then n steps == prefill of T+n tokens).
//  - Sequences may arrive in any order and slot indices may have gaps.
//  - A failed Step leaves the batch's slots in an unspecified state; the engine fails those
//    requests and resets the slots. Other slots are untouched.
// Thread-safety: one caller at a time (the engine thread).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/model_config.h"
#include "engine/sampling_params.h"
#include "engine/state_storage.h"

namespace deltaserve {

// Per-request sampler state the runner reads and updates (owned by the request).
struct SamplerState {
  uint64_t rng_counter = 0;  // advanced by one per sampled token; with the seed it fixes the draw
  // Token ids the request has seen, for penalties: the prompt (repetition only) and the
  // generated tokens (repetition, presence, frequency). Appended to by the engine.
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> generated_tokens;
};

struct SequenceStep {
  int slot = -1;
  std::span<const int32_t> tokens;  // >= 1 token to feed
  bool sample = false;              // sample one token after the last fed token
  const SamplingParams* sampling = nullptr;  // required when sample
  SamplerState* sampler_state = nullptr;     // required when sample
};

struct StepBatch {
  std::vector<SequenceStep> seqs;
  int64_t num_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += static_cast<int64_t>(s.tokens.size());
    return n;
  }
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;  // log-probability of `token` under the (penalised, unscaled) distribution
  std::vector<std::pair<int32_t, float>> top_logprobs;  // best first, when requested
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual const ModelConfig& config() const = 0;
  // The slot pool this runner steps. Its storage lives wherever the runner computes.
  virtual StateStorage& state() = 0;
  // Advances the batch; `out` receives one entry per sequence with sample == true, in order.
  virtual absl::Status Step(const StepBatch& batch, std::vector<SampledToken>* out) = 0;
  // Largest number of tokens one Step may carry (the engine's token budget must not exceed it).
  virtual int64_t max_step_tokens() const = 0;
};

}  // namespace deltaserve
