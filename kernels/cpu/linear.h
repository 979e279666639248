// Dense products for the CPU model through OpenBLAS (fp32, row-major).
//
// Linear: y[n, out] = beta * y + x[n, in] * Wt[in, out]
// The weight is given TRANSPOSED from PyTorch's [out, in] layout (TransposeWeight): OpenBLAS's
// NoTrans x NoTrans sgemm and its transposed sgemv are about twice as fast on small batches as
// the [out, in] forms. Leading dimensions (row strides, in elements) for x and y let column
// slices of wider buffers be read and written in place.
// Thread-safety: OpenBLAS's thread count is process-global; SetBlasThreads sets it.
#pragma once

#include <cstdint>

namespace deltaserve::cpu {

void Linear(const float* x, int64_t ldx, int64_t n, int64_t in, const float* wt, int64_t out,
            float* y, int64_t ldy, float beta = 0.0f);

// [rows, cols] row-major -> [cols, rows] row-major.
void TransposeMatrix(const float* src, int64_t rows, int64_t cols, float* dst);

// Sets the number of threads OpenBLAS uses (>= 1).
void SetBlasThreads(int threads);

}  // namespace deltaserve::cpu
