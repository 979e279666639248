// Elements of an SWA ring (swa_decode.h): fp32, or bf16 rounded to nearest even when stored.
// Keys and values read back from a bf16 ring are the rounded ones; those of the tokens a launch
// brings in enter its attention in fp32 (as the CPU model does, kernels/cpu/swa_attention.h).
// Include only from CUDA sources.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/bf16_pack.cuh"

namespace deltaserve::cuda {

template <typename T>
struct RingElem;

template <>
struct RingElem<float> {
  static __device__ __forceinline__ float Load(const float* p) { return *p; }
  static __device__ __forceinline__ float LoadStreaming(const float* p) { return __ldcs(p); }
  // Four elements; `p` 16-byte aligned.
  static __device__ __forceinline__ float4 Load4(const float* p) {
    return *reinterpret_cast<const float4*>(p);
  }
  static __device__ __forceinline__ float4 Load4Streaming(const float* p) {
    return __ldcs(reinterpret_cast<const float4*>(p));
  }
  static __device__ __forceinline__ void Store(float* p, float x) { *p = x; }
};

template <>
struct RingElem<__nv_bfloat16> {
  // The bf16 value in the low 16 bits of `bits16` (the high bits are ignored).
  static __device__ __forceinline__ float Widen(uint32_t bits16) {
    return __uint_as_float(bits16 << 16);
  }
  static __device__ __forceinline__ float Load(const __nv_bfloat16* p) {
    return Widen(*reinterpret_cast<const unsigned short*>(p));
  }
  static __device__ __forceinline__ float LoadStreaming(const __nv_bfloat16* p) {
    return Widen(__ldcs(reinterpret_cast<const unsigned short*>(p)));
  }
  // Four elements; `p` 8-byte aligned.
  static __device__ __forceinline__ float4 Load4(const __nv_bfloat16* p) {
    return Bf16x4ToFloat4(*reinterpret_cast<const uint2*>(p));
  }
  static __device__ __forceinline__ void Store(__nv_bfloat16* p, float x) {
    *p = __float2bfloat16_rn(x);
  }
};

}  // namespace deltaserve::cuda
