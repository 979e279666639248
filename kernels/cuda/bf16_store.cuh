// Packed bf16 stores for kernels of kernels/cuda. Include only from CUDA sources.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace deltaserve::cuda {

// Four floats rounded to bf16 (nearest even) as one 8-byte store; `dst` 8-byte aligned, in
// global or shared memory.
__device__ __forceinline__ void StoreBf16x4(__nv_bfloat16* dst, float a, float b, float c,
                                            float d) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
  uint2 v;
  v.x = *reinterpret_cast<uint32_t*>(&lo);
  v.y = *reinterpret_cast<uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(dst) = v;
}

}  // namespace deltaserve::cuda
