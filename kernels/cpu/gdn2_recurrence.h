// Gated Delta Rule-2 recurrence for ONE value head over T consecutive tokens
// (MODEL_SPEC.md section 1), fp32, token by token:
//   alpha = exp(g_t);  S_bar = diag(alpha) S;  r = S_bar^T (b_t * k_t)
//   u = w_t * v_t - r;  S = S_bar + k_t u^T;  o_t = S^T q_t = S_bar^T q_t + (k_t . q_t) u
//
// Inputs per token t (row strides in elements): q, k, g (log-decay, <= 0), b (erase gate,
// already activated and scaled) each `dk` wide at q + t*ld_q, k + t*ld_k, ...; v, w (write gate,
// activated) each `dv` wide at v + t*ld_v, w + t*ld_w. `state` is the head's [dk, dv] row-major
// fp32 matrix, updated in place. Output o_t (dv wide) is written at o + t*ld_o. `scratch` needs
// 3*dv + 2*dk floats. Thread-safety: pure function; different heads may run concurrently.
#pragma once

#include <cstdint>

namespace deltaserve::cpu {

struct Gdn2HeadArgs {
  int64_t T = 0;
  int dk = 0;
  int dv = 0;
  const float* q = nullptr;
  int64_t ld_q = 0;
  const float* k = nullptr;
  int64_t ld_k = 0;
  const float* g = nullptr;
  int64_t ld_g = 0;
  const float* b = nullptr;
  int64_t ld_b = 0;
  const float* v = nullptr;
  int64_t ld_v = 0;
  const float* w = nullptr;
  int64_t ld_w = 0;
  float* state = nullptr;
  float* o = nullptr;
  int64_t ld_o = 0;
  float* scratch = nullptr;
};

void Gdn2HeadRecurrence(const Gdn2HeadArgs& a);

}  // namespace deltaserve::cpu
