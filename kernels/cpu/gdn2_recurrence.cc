// GDN-2 recurrence (see gdn2_recurrence.h). One pass over S_bar computes the decay and both
// reductions (r and S_bar^T q); a second pass adds the rank-1 write.
#include "kernels/cpu/gdn2_recurrence.h"

#include <cmath>

namespace deltaserve::cpu {

void Gdn2HeadRecurrence(const Gdn2HeadArgs& a) {
  const int dk = a.dk;
  const int dv = a.dv;
  float* __restrict__ r = a.scratch;
  float* __restrict__ oq = r + dv;
  float* __restrict__ u = oq + dv;
  float* __restrict__ alpha = u + dv;
  float* __restrict__ bk = alpha + dk;
  float* __restrict__ S = a.state;
  for (int64_t t = 0; t < a.T; ++t) {
    const float* q = a.q + t * a.ld_q;
    const float* k = a.k + t * a.ld_k;
    const float* g = a.g + t * a.ld_g;
    const float* b = a.b + t * a.ld_b;
    const float* v = a.v + t * a.ld_v;
    const float* w = a.w + t * a.ld_w;
    float* o = a.o + t * a.ld_o;
    float kq = 0.0f;
    for (int i = 0; i < dk; ++i) {
      alpha[i] = std::exp(g[i]);
      bk[i] = b[i] * k[i];
      kq += k[i] * q[i];
    }
    for (int j = 0; j < dv; ++j) {
      r[j] = 0.0f;
      oq[j] = 0.0f;
    }
    for (int i = 0; i < dk; ++i) {
      float* __restrict__ row = S + static_cast<int64_t>(i) * dv;
      const float ai = alpha[i];
      const float bki = bk[i];
      const float qi = q[i];
      for (int j = 0; j < dv; ++j) {
        const float s = ai * row[j];
        row[j] = s;
        r[j] += s * bki;
        oq[j] += s * qi;
      }
    }
    for (int j = 0; j < dv; ++j) {
      u[j] = w[j] * v[j] - r[j];
      o[j] = oq[j] + kq * u[j];
    }
    for (int i = 0; i < dk; ++i) {
      float* __restrict__ row = S + static_cast<int64_t>(i) * dv;
      const float ki = k[i];
      for (int j = 0; j < dv; ++j) row[j] += ki * u[j];
    }
  }
}

}  // namespace deltaserve::cpu
