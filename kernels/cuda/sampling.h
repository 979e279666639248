// Token sampling on the GPU, with the semantics of engine/sampler.h (the CPU sampler):
//   1. penalties on raw logits (LaunchApplyPenalties; entries built on the host from each
//      request's history, one per distinct (row, token));
//   2. log-probability of the chosen token = logit - logsumexp over the penalised logits;
//   3. greedy (temperature 0): argmax, ties to the lowest id; otherwise weights
//      w = exp((x - max) / T), kept set = top-k (by weight, ties to the lower id), then the
//      shortest top-p prefix of that order, then min-p (w >= min_p), and one draw with the
//      uniform number `u` the host computed from (seed, counter): the first id, in id order,
//      where the running kept mass exceeds u * total kept mass.
// Mass sums are in double like the CPU's but in a different order; a draw can differ from the
// CPU sampler only when u * mass lands within rounding of a boundary.
//
// Tensors (device memory): logits f32 [*, ld] (first `vocab` columns are candidates; modified in
// place by the penalties only); sampled row j reads logits row row_index[j]; params [rows];
// scratch f32 [rows, vocab]; tokens int32 [rows]; logprobs f32 [rows] (of the chosen token).
// PenaltyEntry::row is the sampled-row index j (0 <= j < rows).
// Thread-safety: launches are ordered on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

struct SampleRowParams {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  double u = 0.0;  // uniform in [0, 1)
};

struct PenaltyEntry {
  int32_t row = 0;
  int32_t token = 0;
  uint32_t gen_count = 0;  // occurrences in the generated tokens
  uint32_t in_prompt = 0;  // 1 if in the prompt (only when the repetition penalty is on)
};

struct PenaltyRowParams {
  float repetition = 1.0f;
  float presence = 0.0f;
  float frequency = 0.0f;
};

absl::Status LaunchApplyPenalties(float* logits, int64_t ld, const int32_t* row_index,
                                  const PenaltyEntry* entries, int64_t num_entries,
                                  const PenaltyRowParams* row_params, cudaStream_t stream);

absl::Status LaunchSample(const float* logits, int64_t ld, const int32_t* row_index, int rows,
                          int vocab,
                          const SampleRowParams* params, float* scratch, int32_t* tokens,
                          float* logprobs, cudaStream_t stream);

}  // namespace deltaserve::cuda
