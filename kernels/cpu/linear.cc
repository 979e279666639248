// OpenBLAS-backed Linear (see linear.h).
#include "kernels/cpu/linear.h"

#include <cblas.h>

namespace deltaserve::cpu {

void Linear(const float* x, int64_t ldx, int64_t n, int64_t in, const float* w, int64_t out,
            float* y, int64_t ldy, float beta) {
  if (n <= 0 || out <= 0) return;
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(out), static_cast<blasint>(in),
                1.0f, w, static_cast<blasint>(in), x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(n),
              static_cast<blasint>(out), static_cast<blasint>(in), 1.0f, x,
              static_cast<blasint>(ldx), w, static_cast<blasint>(in), beta, y,
              static_cast<blasint>(ldy));
}

void SetBlasThreads(int threads) { openblas_set_num_threads(threads < 1 ? 1 : threads); }

}  // namespace deltaserve::cpu
