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

#include <array>
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
// Definition: r = Philox4x32_10(ctr = {lo32(counter), hi32(counter), 0, 0},
//                               key = {lo32(seed), hi32(seed)});
//             u = ((uint64(r[1]) << 32 | r[0]) >> 11) * 2^-53.
double SamplerUniform(uint64_t seed, uint64_t counter);

// Philox4x32 with 10 rounds (Salmon et al., SC'11; the Random123 / cuRAND generator):
// multipliers 0xD2511F53, 0xCD9E8D57, Weyl key increments 0x9E3779B9, 0xBB67AE85.
std::array<uint32_t, 4> Philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key);

// Exact sampling semantics (every backend reproduces them; the CPU code is the reference):
//   w_i  = exp((l_i - max_j l_j) / temperature) over penalised logits l (non-finite l: w = 0);
//   order: by w descending, ties by lower id first;
//   top-k: keep the first k of that order (k = 0 or k >= vocab: all); Z_k = their total w;
//   top-p: keep the shortest prefix (same order) of the top-k set whose w sum >= top_p * Z_k;
//   min-p: keep only w_i >= min_p * max_j w_j;
//   draw:  u = SamplerUniform(seed, rng_counter); Z = total w of the kept set; the token is the
//          smallest kept id whose inclusive prefix sum of w over kept ids (ascending id order)
//          exceeds u * Z (the largest kept id if rounding leaves none).
// rng_counter advances by one per sampled token, greedy included.

}  // namespace deltaserve
