// Ring-buffer sliding-window attention (see swa_attention.h).
#include "kernels/cpu/swa_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace deltaserve::cpu {

void SwaGroupAttention(const SwaGroupArgs& a) {
  const int hs = a.head_size;
  const int64_t W = a.window;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  float* p = a.scratch;
  for (int64_t t = 0; t < a.T; ++t) {
    const int64_t pos = a.pos0 + t;
    const int64_t row = pos % W;
    std::memcpy(a.k_ring + row * a.ld_ring, a.k + t * a.ld_kv, hs * sizeof(float));
    std::memcpy(a.v_ring + row * a.ld_ring, a.v + t * a.ld_kv, hs * sizeof(float));
    const int64_t first = std::max<int64_t>(0, pos - W + 1);
    const int64_t n = pos - first + 1;
    for (int h = 0; h < a.q_heads; ++h) {
      const float* q = a.q + t * a.ld_q + static_cast<int64_t>(h) * hs;
      float mx = -INFINITY;
      for (int64_t s = 0; s < n; ++s) {
        const float* kr = a.k_ring + ((first + s) % W) * a.ld_ring;
        float dot = 0.0f;
        for (int i = 0; i < hs; ++i) dot += q[i] * kr[i];
        p[s] = dot * scale;
        mx = std::max(mx, p[s]);
      }
      float sum = 0.0f;
      for (int64_t s = 0; s < n; ++s) {
        p[s] = std::exp(p[s] - mx);
        sum += p[s];
      }
      const float inv = 1.0f / sum;
      float* o = a.out + t * a.ld_out + static_cast<int64_t>(h) * hs;
      std::fill(o, o + hs, 0.0f);
      for (int64_t s = 0; s < n; ++s) {
        const float* vr = a.v_ring + ((first + s) % W) * a.ld_ring;
        const float ps = p[s] * inv;
        for (int i = 0; i < hs; ++i) o[i] += ps * vr[i];
      }
    }
  }
}

}  // namespace deltaserve::cpu
