// Sampler: turns one sequence's logits into a token on the host (the CPU runner's sampler; the
// CUDA runner implements the same semantics on the device).
//
// Order of operations (the contract every backend follows):
//   1. penalties on raw logits: repetition (tokens in prompt or output), presence and frequency
//      (tokens in output);
//   2. log-probabilities for reporting = log_softmax of the penalised logits (temperature 1);
//   3. greedy (temperature 0): argmax, ties to the lowest id. Otherwise divide by temperature,
//      softmax, then filter: top-k, then top-p (smallest prefix of the sorted distribution whose
//      mass >= top_p), then min-p (p >= min_p * p_max); renormalise and draw one uniform number
//      from Philox-style counter RNG keyed by (seed, rng_counter), advancing rng_counter by one.
// Thread-safety: stateless; safe to call concurrently on different data.
#pragma once

#include <cstdint>
#include <span>

#include "engine/model_runner.h"
#include "engine/sampling_params.h"

namespace deltaserve {

// Samples from `logits` (padded_vocab entries; only the first `vocab_size` are candidates).
// `logits` is used as scratch and is clobbered. Updates state->rng_counter.
SampledToken SampleToken(std::span<float> logits, int vocab_size, const SamplingParams& params,
                         SamplerState* state);

// The uniform draw in [0, 1) used for (seed, counter); shared so that backends agree.
double SamplerUniform(uint64_t seed, uint64_t counter);

}  // namespace deltaserve
