// OpenBLAS-backed Linear (see linear.h).
#include "kernels/cpu/linear.h"

#include <cblas.h>

namespace deltaserve::cpu {

void Linear(const float* x, int64_t ldx, int64_t n, int64_t in, const float* wt, int64_t out,
            float* y, int64_t ldy, float beta) {
  if (n <= 0 || out <= 0) return;
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(in), static_cast<blasint>(out),
                1.0f, wt, static_cast<blasint>(out), x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(n),
              static_cast<blasint>(out), static_cast<blasint>(in), 1.0f, x,
              static_cast<blasint>(ldx), wt, static_cast<blasint>(out), beta, y,
              static_cast<blasint>(ldy));
}

void TransposeMatrix(const float* src, int64_t rows, int64_t cols, float* dst) {
  constexpr int64_t kBlock = 64;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
      const int64_t r1 = r0 + kBlock < rows ? r0 + kBlock : rows;
      const int64_t c1 = c0 + kBlock < cols ? c0 + kBlock : cols;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
      }
    }
  }
}

void SetBlasThreads(int threads) { openblas_set_num_threads(threads < 1 ? 1 : threads); }

}  // namespace deltaserve::cpu
