// Row-wise and element-wise fp32 ops of the CPU model: RMSNorm, per-head L2 normalisation,
// activations (SiLU, sigmoid, softplus) and the SwiGLU product.
// All take row strides (elements) so they can work on column slices of wider buffers.
// Thread-safety: pure functions.
#pragma once

#include <cmath>
#include <cstdint>

namespace deltaserve::cpu {

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }
// log(1 + exp(x)) without overflow or loss for large |x|.
inline float Softplus(float x) { return std::fmax(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); }

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * gamma, for `rows` rows of width `d`.
// y may alias x (same ld).
void RmsNormRows(const float* x, int64_t ldx, int64_t rows, int64_t d, const float* gamma,
                 float eps, float* y, int64_t ldy);

// In place, per row and per head of width `hd` (row width heads*hd):
// x <- x / sqrt(sum(x^2) + eps) * scale.
void L2NormHeadsRows(float* x, int64_t ld, int64_t rows, int64_t heads, int64_t hd, float eps,
                     float scale);

// out[r, i] = silu(a[r, i]) * b[r, i].
void SwiGluRows(const float* a, const float* b, int64_t ld_ab, int64_t rows, int64_t d, float* out,
                int64_t ld_out);

}  // namespace deltaserve::cpu
