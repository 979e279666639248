// Ring-buffer sliding-window attention (see swa_attention.h).
#include "kernels/cpu/swa_attention.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/bf16.h"

namespace deltaserve::cpu {
namespace {

// A ring element of type T: stored from fp32, read back as fp32.
inline void Store(float* dst, float x) { *dst = x; }
inline void Store(uint16_t* dst, float x) { *dst = FloatToBf16(x); }
inline float Load(const float* src) { return *src; }
inline float Load(const uint16_t* src) { return Bf16ToFloat(*src); }

template <typename T>
void Attend(const SwaGroupArgs& a, T* k_ring, T* v_ring) {
  const int hs = a.head_size;
  const int64_t W = a.window;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hs)));
  float* p = a.scratch;
  for (int64_t t = 0; t < a.T; ++t) {
    const int64_t pos = a.pos0 + t;
    const int64_t row = pos % W;
    for (int i = 0; i < hs; ++i) {
      Store(k_ring + row * a.ld_ring + i, a.k[t * a.ld_kv + i]);
      Store(v_ring + row * a.ld_ring + i, a.v[t * a.ld_kv + i]);
    }
    const int64_t first = std::max<int64_t>(0, pos - W + 1);
    const int64_t n = pos - first + 1;
    for (int h = 0; h < a.q_heads; ++h) {
      const float* q = a.q + t * a.ld_q + static_cast<int64_t>(h) * hs;
      float mx = -INFINITY;
      for (int64_t s = 0; s < n; ++s) {
        const int64_t j = first + s;
        float dot = 0.0f;
        if (j >= a.pos0) {
          const float* kr = a.k + (j - a.pos0) * a.ld_kv;
          for (int i = 0; i < hs; ++i) dot += q[i] * kr[i];
        } else {
          const T* kr = k_ring + (j % W) * a.ld_ring;
          for (int i = 0; i < hs; ++i) dot += q[i] * Load(kr + i);
        }
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
        const int64_t j = first + s;
        const float ps = p[s] * inv;
        if (j >= a.pos0) {
          const float* vr = a.v + (j - a.pos0) * a.ld_kv;
          for (int i = 0; i < hs; ++i) o[i] += ps * vr[i];
        } else {
          const T* vr = v_ring + (j % W) * a.ld_ring;
          for (int i = 0; i < hs; ++i) o[i] += ps * Load(vr + i);
        }
      }
    }
  }
}

}  // namespace

void SwaGroupAttention(const SwaGroupArgs& a) {
  if (a.ring_bf16) {
    Attend(a, static_cast<uint16_t*>(a.k_ring), static_cast<uint16_t*>(a.v_ring));
  } else {
    Attend(a, static_cast<float*>(a.k_ring), static_cast<float*>(a.v_ring));
  }
}

}  // namespace deltaserve::cpu
