// Warp-level bf16 tensor-core products for sm_80+ (device code only): mma.sync m16n8k16 with
// bf16 operands and fp32 accumulation, and the packing of fp32 pairs into bf16 operands.
//
// Fragment layouts (PTX ISA, m16n8k16 .bf16), g = lane / 4, t = lane % 4; a register holds two
// consecutive k (A, B) or n (C) elements, the lower index in the low half:
//   A (16x16, row-major): a0 (g, 2t), a1 (g+8, 2t), a2 (g, 2t+8), a3 (g+8, 2t+8)
//   B (16x8, "col"):      b0 (k=2t, n=g), b1 (k=2t+8, n=g)
//   C (16x8):             c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1)
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace deltaserve::cuda::mma {

// lo, hi rounded to bf16 (nearest) in one register, lo in the low half.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float2 UnpackBf16(uint32_t x) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&x));
}

// c += A B.
__device__ __forceinline__ void MmaBf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace deltaserve::cuda::mma
