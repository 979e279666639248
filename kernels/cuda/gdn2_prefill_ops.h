// Row-wise pieces of the GDN-2 mixer around the chunked recurrence for prompts (MODEL_SPEC.md
// section 2, steps 3-5 and 7), for many tokens at once; the decode path fuses the same math
// into its kernel (gdn2_decode.h) and these match it.
//
// LaunchGdn2PrefillGates, in place, for every token row r and key head h (value head hv):
//   q[r, h]  = q / sqrt(|q|^2 + 1e-6) * dk^-1/2;   k[r, h] = k / sqrt(|k|^2 + 1e-6)
//   f[r, c] <- g = -exp(a_log[h]) * softplus(f + dt_bias[c])   (the log-decay)
//   b[r, c] <- sigmoid(b) (x2 when allow_neg_eigval);   w[r, c] <- sigmoid(w)
// LaunchGdn2PrefillOutput, for every row r and value head hv:
//   y[r, hv*dv + j] = o / sqrt(mean_j(o^2) + eps) * o_norm[j] * act(z + z_bias[hv*dv + j]),
//   act = SiLU or sigmoid; y f32 or bf16.
// Tensors: f32 device memory, [rows, key_dim] (q, k, f, b) and [rows, value_dim] (w, o, z), each
// with its own row stride in elements. Supported: dk, dv in {32, 64, 128}.
//
// Thread-safety: launches are ordered on `stream`.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/gdn2_decode.h"

namespace deltaserve::cuda {

struct Gdn2PrefillGatesArgs {
  int64_t rows = 0;
  float* q = nullptr;
  float* k = nullptr;
  float* f = nullptr;
  float* b = nullptr;
  float* w = nullptr;
  int64_t q_stride = 0, k_stride = 0, f_stride = 0, b_stride = 0, w_stride = 0;
  const float* a_log = nullptr;    // [H]
  const float* dt_bias = nullptr;  // [key_dim]
};

absl::Status LaunchGdn2PrefillGates(const Gdn2DecodeShape& shape, const Gdn2PrefillGatesArgs& a,
                                    cudaStream_t stream);

struct Gdn2PrefillOutputArgs {
  int64_t rows = 0;
  const float* o = nullptr;
  const float* z = nullptr;
  int64_t o_stride = 0, z_stride = 0;
  const float* z_bias = nullptr;  // [value_dim]
  const float* o_norm = nullptr;  // [dv]
  void* y = nullptr;
  int64_t y_stride = 0;
  DType y_type = DType::kBF16;
};

absl::Status LaunchGdn2PrefillOutput(const Gdn2DecodeShape& shape,
                                     const Gdn2PrefillOutputArgs& a, cudaStream_t stream);

}  // namespace deltaserve::cuda
