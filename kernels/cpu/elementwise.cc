// Row-wise fp32 ops (see elementwise.h). Sums accumulate in double where a row can be long
// (RMSNorm over d_model) so the CPU reference stays close to a float64 computation.
#include "kernels/cpu/elementwise.h"

namespace deltaserve::cpu {

void RmsNormRows(const float* x, int64_t ldx, int64_t rows, int64_t d, const float* gamma,
                 float eps, float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    double ss = 0.0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv * gamma[i];
  }
}

void L2NormHeadsRows(float* x, int64_t ld, int64_t rows, int64_t heads, int64_t hd, float eps,
                     float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + r * ld + h * hd;
      double ss = 0.0;
      for (int64_t i = 0; i < hd; ++i) ss += static_cast<double>(v[i]) * v[i];
      const float f = static_cast<float>(scale / std::sqrt(ss + eps));
      for (int64_t i = 0; i < hd; ++i) v[i] *= f;
    }
  }
}

void SwiGluRows(const float* a, const float* b, int64_t ld_ab, int64_t rows, int64_t d, float* out,
                int64_t ld_out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * ld_ab;
    const float* br = b + r * ld_ab;
    float* o = out + r * ld_out;
    for (int64_t i = 0; i < d; ++i) o[i] = Silu(ar[i]) * br[i];
  }
}

}  // namespace deltaserve::cpu
