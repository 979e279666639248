// Rotary position embedding, NeoX style (rotate halves), MODEL_SPEC.md section 3.
//
// For each of `rows` tokens (token r at absolute position pos0 + r) and each of `heads` heads of
// width `head_size` (head h of row r at x + r*ld + h*head_size), the first `rope_dims` channels
// are rotated: with half = rope_dims/2 and theta_i = pos * base^(-2i/rope_dims), i < half:
//   x[i] <- x[i] cos - x[i+half] sin;   x[i+half] <- x[i+half] cos + x[i] sin.
// Angles, cos and sin are computed in double (positions can be large), then applied in fp32.
// Thread-safety: pure function.
#pragma once

#include <cstdint>

namespace deltaserve::cpu {

void ApplyRopeNeox(float* x, int64_t ld, int64_t rows, int64_t pos0, int heads, int head_size,
                   int rope_dims, double base);

}  // namespace deltaserve::cpu
