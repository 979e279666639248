// Small row-wise kernels of a decode step (MODEL_SPEC.md section 3): embedding gather, RMSNorm
// to bf16, SwiGLU, fp32 -> bf16 casts, and the per-slot position counter.
//
// The residual adds are fused into the output projections (Gemm with beta = 1 accumulates into
// the fp32 residual stream), so RMSNorm here reads the already-updated residual.
//
// All pointers are device memory; strides are in elements; launchers return InvalidArgument on a
// bad shape and never abort. Thread-safety: launches are ordered on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

// x[r, :] = float(table[tokens[r], :]) for r < rows.
//   table bf16 [vocab, d] (row stride d); tokens int32 [rows] in [0, vocab); x f32 [rows, d].
// Tokens out of range produce a row of NaN (the caller validates tokens on the host).
absl::Status LaunchEmbedding(const void* table, int64_t vocab, int64_t d, const int32_t* tokens,
                             int64_t rows, float* x, cudaStream_t stream);

// out[r, :] = bf16(x[r, :] / sqrt(mean(x[r, :]^2) + eps) * gamma).
//   x f32 [rows, d] (stride ldx); gamma f32 [d]; out bf16 [rows, d] (stride ldo).
absl::Status LaunchRmsNormToBf16(const float* x, int64_t ldx, int64_t rows, int64_t d,
                                 const float* gamma, float eps, void* out, int64_t ldo,
                                 cudaStream_t stream);

// out[r, i] = bf16(silu(h[r, i]) * h[r, width + i]) for i < width, in fp32.
//   h f32 or bf16 (h_type) [rows, 2*width] (stride ldh, in elements): the w1 half then the w2
//   half; out bf16 (stride ldo).
absl::Status LaunchSwiGlu(const void* h, DType h_type, int64_t ldh, int64_t rows, int64_t width,
                          void* out, int64_t ldo, cudaStream_t stream);

// out[r, c] = bf16(in[r, c]).  in f32 [rows, cols] (stride ldi); out bf16 (stride ldo).
absl::Status LaunchCastToBf16(const float* in, int64_t ldi, int64_t rows, int64_t cols, void* out,
                              int64_t ldo, cudaStream_t stream);

// For r < rows with slots[r] >= 0 (negative slots mark padding rows and are skipped):
//   *(int64*)(pool + slots[r] * slot_stride + position_offset) += 1.
absl::Status LaunchAdvancePositions(void* pool, int64_t slot_stride, int64_t position_offset,
                                    const int32_t* slots, int64_t rows, cudaStream_t stream);

// Fills out[0, n) with deterministic pseudo-random values uniform in [offset - scale,
// offset + scale] (a hash of (seed, index)); for benchmarks with random weights.
absl::Status LaunchFillRandom(void* out, DType type, int64_t n, uint64_t seed, float scale,
                              float offset, cudaStream_t stream);

}  // namespace deltaserve::cuda
