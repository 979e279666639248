// Short causal convolution (see short_conv.h).
#include "kernels/cpu/short_conv.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/elementwise.h"

namespace deltaserve::cpu {

void ShortConvWithHistory(const float* x, int64_t ldx, int64_t T, int64_t C, const float* w_t,
                          int W, float* history, bool silu, float* y, int64_t ldy) {
  const int64_t H = W - 1;  // history rows
  for (int64_t t = 0; t < T; ++t) {
    float* yr = y + t * ldy;
    std::fill(yr, yr + C, 0.0f);
    for (int j = 0; j < W; ++j) {
      const int64_t src = t - H + j;  // index into the chunk; negative: history row H + src
      const float* xr = src >= 0 ? x + src * ldx : history + (H + src) * C;
      const float* wr = w_t + static_cast<int64_t>(j) * C;
      for (int64_t c = 0; c < C; ++c) yr[c] += wr[c] * xr[c];
    }
    if (silu) {
      for (int64_t c = 0; c < C; ++c) yr[c] = Silu(yr[c]);
    }
  }
  if (H == 0) return;
  // New history: the last H rows of [history; x].
  if (T >= H) {
    for (int64_t r = 0; r < H; ++r) {
      std::memcpy(history + r * C, x + (T - H + r) * ldx, C * sizeof(float));
    }
  } else {
    std::memmove(history, history + T * C, (H - T) * C * sizeof(float));
    for (int64_t r = 0; r < T; ++r) {
      std::memcpy(history + (H - T + r) * C, x + r * ldx, C * sizeof(float));
    }
  }
}

}  // namespace deltaserve::cpu
