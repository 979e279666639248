// Device activations shared by the decode-step kernels (the GDN-2 decode kernels and the row
// kernels of elementwise.cu). Include only from CUDA sources of kernels/cuda.
//
// Fast division (two instructions instead of a correctly rounded divide; about 2 ulp): the
// denominators are >= 1, and an infinite one (x very negative) gives 0, the correct limit.
#pragma once

namespace deltaserve::cuda {

__device__ __forceinline__ float Silu(float x) { return __fdividef(x, 1.0f + __expf(-x)); }
__device__ __forceinline__ float Sigmoid(float x) { return __fdividef(1.0f, 1.0f + __expf(-x)); }

}  // namespace deltaserve::cuda
