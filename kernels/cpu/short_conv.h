// Short causal depthwise convolution with carried history (MODEL_SPEC.md section 2 step 2).
//
// For one sequence of T tokens and C channels:
//   y[t, c] = sum_{j=0..W-1} w[j, c] * x_{t-W+1+j}[c]
// where x_{-m} (before this chunk) comes from `history` ([W-1, C], row 0 oldest, row W-2 the
// token just before this chunk; zeros for a fresh sequence). The weight is given TRANSPOSED,
// `w_t[j, c]` = checkpoint weight[c, 0, j], so the inner loop runs over contiguous channels.
// Afterwards `history` holds the last W-1 inputs (history rows then x rows, newest last).
// If `silu`, y = SiLU(conv). y must not alias x or history.
// Thread-safety: pure function of its arguments.
#pragma once

#include <cstdint>

namespace deltaserve::cpu {

void ShortConvWithHistory(const float* x, int64_t ldx, int64_t T, int64_t C, const float* w_t,
                          int W, float* history, bool silu, float* y, int64_t ldy);

}  // namespace deltaserve::cpu
