// Small-batch bf16 matrix products for decode steps (at most kGemvMaxRows input rows), written to
// stream the weights once at close to copy bandwidth, with the neighbouring row-wise operations
// of a decode step fused in:
//
//   out[m, j] = s_m * sum_i xin[m, i] * W[j, i]   for m < rows, j < n, fp32 accumulation, where
//     xin = x,         s = 1                        (GemvInput::kBf16)
//     xin = bf16(x),   s = 1                        (GemvInput::kF32: rounded on load)
//     xin = bf16(x * gamma), s = 1 / sqrt(mean_i(x^2) + eps)
//                                                   (GemvInput::kF32RmsNorm: RMSNorm over k,
//                                                    its scale applied to the sums)
//   and the output is
//     out  = acc                                      (GemvOutput::kF32)
//     out += acc                                      (GemvOutput::kF32Accumulate: residual add)
//     out  = bf16(silu(acc1) * acc2)                  (GemvOutput::kSwiGluBf16: W holds 2n rows,
//            w1 = rows [0, n), w2 = rows [n, 2n); acc1 / acc2 use row j of each)
//   (Up to where the bf16 rounding falls, the function of the separate RMSNorm / cast / SwiGLU
//   kernels of elementwise.h followed by a Gemm: RMSNorm input rounds x * gamma instead of the
//   normalised value, the same relative error, so staging takes one pass and no barrier.)
//
// Tensors (device memory; strides in elements):
//   x      bf16 or f32 [rows, k], row stride ldx >= k (any element alignment)
//   W      bf16 [n (2n for SwiGLU), k], row-major, row stride ldw; W 16-byte aligned,
//          k and ldw multiples of 8 (each weight row is read with 16-byte loads)
//   gamma  f32 [k] (kF32RmsNorm only)
//   out    f32 [rows, n] (bf16 for kSwiGluBf16), row stride ldo >= n
// Up to kGemvMaxProblems independent problems that share rows, k and the input / output kinds
// (e.g. the two small dv -> value_dim products of a GDN-2 layer) run in one launch.
//
// Launch: one warp per output column (or column pair), lanes striding over k with 16-byte loads,
// several loads in flight per lane; the input rows are staged in shared memory as bf16 by every
// block (RMSNorm recomputed per block). With `programmatic` the launch is a programmatic
// dependent of the kernel before it on the stream (PDL, capturable in CUDA graphs): it becomes
// resident while that kernel drains, issues its first weight loads (weights are never written by
// a decode step), lets its own dependents launch, and only then waits for its predecessor before
// reading x or writing out. Every block waits, so the completion of this grid implies that of
// all earlier work on the stream.
//
// The launcher checks shapes, strides and alignment and returns InvalidArgument naming the
// field; it never aborts. Thread-safety: launches are ordered on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

inline constexpr int kGemvMaxRows = 8;
inline constexpr int kGemvMaxProblems = 2;

enum class GemvInput { kBf16, kF32, kF32RmsNorm };
enum class GemvOutput { kF32, kF32Accumulate, kSwiGluBf16 };

struct GemvProblem {
  const void* x = nullptr;
  int64_t ldx = 0;
  const void* w = nullptr;
  int64_t ldw = 0;
  int64_t n = 0;  // output columns (SwiGLU: W has 2n rows)
  void* out = nullptr;
  int64_t ldo = 0;
};

struct GemvArgs {
  int rows = 0;  // 0..kGemvMaxRows (0: nothing to do)
  int64_t k = 0;
  GemvInput input = GemvInput::kBf16;
  GemvOutput output = GemvOutput::kF32;
  const float* gamma = nullptr;  // kF32RmsNorm
  float eps = 1e-5f;             // kF32RmsNorm
  GemvProblem problems[kGemvMaxProblems];
  int num_problems = 1;
  bool programmatic = false;
};

absl::Status LaunchGemv(const GemvArgs& args, cudaStream_t stream);

// Bytes one launch must move at the minimum (weights read once, x read, out written; the
// residual read for kF32Accumulate). For bandwidth reports.
int64_t GemvBytes(const GemvArgs& args);

}  // namespace deltaserve::cuda
