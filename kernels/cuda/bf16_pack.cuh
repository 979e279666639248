// Packed bf16 loads and stores for kernels of kernels/cuda. Include only from CUDA sources.
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

// Four bf16 values packed in 8 bytes (element 0 in the low half of u.x) as floats.
__device__ __forceinline__ float4 Bf16x4ToFloat4(uint2 u) {
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

}  // namespace deltaserve::cuda
