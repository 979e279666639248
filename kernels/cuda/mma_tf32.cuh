// Warp-level tensor-core products at fp32-level accuracy for sm_80+ (device code only):
// mma.sync m16n8k8 in tf32 with the 3xTF32 split (x = hi + lo with hi, lo tf32;
// a*b ~ hi*hi + hi*lo + lo*hi, the lo*lo term dropped), fp32 accumulation.
//
// Fragment layouts (PTX ISA, m16n8k8 .tf32), g = lane / 4, t = lane % 4:
//   A (16x8, row-major): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)
//   B (8x8, "col"):      b0 (k=t, n=g), b1 (k=t+4, n=g)
//   C (16x8):            c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
#pragma once

#include <cstdint>

namespace deltaserve::cuda::mma {

__device__ __forceinline__ void SplitTf32(float x, uint32_t& hi, uint32_t& lo) {
  uint32_t h, l;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(h) : "f"(x));
  const float r = x - __uint_as_float(h);
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(l) : "f"(r));
  hi = h;
  lo = l;
}

__device__ __forceinline__ void MmaTf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// An A fragment split into its tf32 high and low parts.
struct SplitA {
  uint32_t hi[4], lo[4];
  __device__ __forceinline__ explicit SplitA(const float (&a)[4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) SplitTf32(a[i], hi[i], lo[i]);
  }
};

// c += A B with B given in fp32 (3xTF32; the small terms first).
__device__ __forceinline__ void Mma3xTf32(float (&c)[4], const SplitA& a, float b0, float b1) {
  uint32_t bh0, bl0, bh1, bl1;
  SplitTf32(b0, bh0, bl0);
  SplitTf32(b1, bh1, bl1);
  MmaTf32(c, a.lo, bh0, bh1);
  MmaTf32(c, a.hi, bl0, bl1);
  MmaTf32(c, a.hi, bh0, bh1);
}

}  // namespace deltaserve::cuda::mma
