// Dense products for the CPU model through OpenBLAS (fp32, row-major).
//
// Linear: y[n, out] = beta * y + x[n, in] * W[out, in]^T   (W in PyTorch's [out, in] layout)
// with leading dimensions (row strides, in elements) for x and y so column slices of wider
// buffers can be read and written in place.
// Thread-safety: OpenBLAS's thread count is process-global; SetBlasThreads sets it.
#pragma once

#include <cstdint>

namespace deltaserve::cpu {

void Linear(const float* x, int64_t ldx, int64_t n, int64_t in, const float* w, int64_t out,
            float* y, int64_t ldy, float beta = 0.0f);

// Sets the number of threads OpenBLAS uses (>= 1).
void SetBlasThreads(int threads);

}  // namespace deltaserve::cpu
