// Device helpers of the chunked GDN-2 prefill's tensor-core products (gdn2_chunk_state_pass.cu,
// and RoundTf32 for phase 1): ldmatrix loads of tf32 A fragments, and mma.sync m16n8k8 in tf32,
// either with the 3xTF32 split (x = hi + lo; a*b ~ lo_a*hi_b + hi_a*lo_b + hi_a*hi_b: fp32-level
// products) or single (operands the writer rounded to tf32 with RoundTf32), fp32 accumulation.
//
// Fragment layouts (PTX ISA, m16n8k8 .tf32; g = lane / 4, t = lane % 4):
//   A (16x8, row-major): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)
//   B (8x8, col):        b0 (k=t, n=g), b1 (k=t+4, n=g)
//   C (16x8):            c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
#pragma once

#include <cstdint>

#include "kernels/cuda/async_copy.cuh"

namespace deltaserve::cuda::gdn2_chunk::p2v2 {

// The A fragment of the 16x8 fp32 tile at `tile` (row-major, `pitch` floats, rows 16-byte
// aligned) in one ldmatrix.x4: an 8x4 fp32 block read as an 8x8 b16 matrix gives lane l the
// fp32 at (l / 4, l % 4), which is the tf32 A layout.
__device__ __forceinline__ void LdmatrixA(float (&a)[4], const float* tile, int pitch, int lane) {
  const int j = lane >> 3, r = lane & 7;
  const float* p = tile + ((j & 1) * 8 + r) * pitch + (j >> 1) * 4;
  uint32_t x0, x1, x2, x3;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(x0), "=r"(x1), "=r"(x2), "=r"(x3)
               : "r"(SharedAddr(p)));
  a[0] = __uint_as_float(x0);
  a[1] = __uint_as_float(x1);
  a[2] = __uint_as_float(x2);
  a[3] = __uint_as_float(x3);
}

// x = hi + lo: hi is x truncated to tf32 (a bit mask, full rate; cvt.rna.tf32 is a conversion at
// a quarter of the FP32 rate), lo = x - hi exactly (|lo| < 2^-10 |x|), passed as fp32 bits of
// which the tensor core reads the tf32 part (error below 2^-20 |x|).
__device__ __forceinline__ void Split(float x, uint32_t& hi, uint32_t& lo) {
  const uint32_t h = __float_as_uint(x) & 0xffffe000u;
  hi = h;
  lo = __float_as_uint(x - __uint_as_float(h));
}

// x rounded to the nearest tf32, ties away from zero (low 13 mantissa bits zero), so that a single
// tf32 product, which ignores those bits, sees the rounded value rather than the truncated one.
// Two integer instructions (the same result as cvt.rna.tf32.f32 for finite x below the largest
// tf32; a carry out of the mantissa correctly bumps the exponent).
__device__ __forceinline__ float RoundTf32(float x) {
  return __uint_as_float((__float_as_uint(x) + 0x1000u) & 0xffffe000u);
}

// A product operand as its writer stores it: rounded to tf32 for single tf32 products
// (kRound), else unchanged (3xTF32 splits it when it is read).
template <bool kRound>
__device__ __forceinline__ float StoredOperand(float x) {
  if constexpr (kRound) {
    return RoundTf32(x);
  } else {
    return x;
  }
}

// kSplit: hi and lo parts for Mma3; otherwise only hi, the operand's bits as stored.
struct FragA {
  uint32_t hi[4], lo[4];
  FragA() = default;
  __device__ __forceinline__ explicit FragA(const float (&a)[4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) Split(a[i], hi[i], lo[i]);
  }
  template <bool kSplit>
  __device__ __forceinline__ static FragA Make(const float (&a)[4]) {
    if constexpr (kSplit) {
      return FragA(a);
    } else {
      FragA f;
#pragma unroll
      for (int i = 0; i < 4; ++i) f.hi[i] = __float_as_uint(a[i]);
      return f;
    }
  }
};

struct FragB {
  uint32_t hi[2], lo[2];
  FragB() = default;
  __device__ __forceinline__ FragB(float b0, float b1) {
    Split(b0, hi[0], lo[0]);
    Split(b1, hi[1], lo[1]);
  }
  template <bool kSplit>
  __device__ __forceinline__ static FragB Make(float b0, float b1) {
    if constexpr (kSplit) {
      return FragB(b0, b1);
    } else {
      FragB f;
      f.hi[0] = __float_as_uint(b0);
      f.hi[1] = __float_as_uint(b1);
      return f;
    }
  }
  // From parts split when they were stored (StoreSplit): no conversion on the mma's path.
  __device__ __forceinline__ static FragB Presplit(float h0, float h1, float l0, float l1) {
    FragB f;
    f.hi[0] = __float_as_uint(h0);
    f.hi[1] = __float_as_uint(h1);
    f.lo[0] = __float_as_uint(l0);
    f.lo[1] = __float_as_uint(l1);
    return f;
  }
};

// Stores x = hi + lo as two fp32 words (hi: tf32 bits), for FragB::Presplit readers.
__device__ __forceinline__ void StoreSplit2(float* hi_dst, float* lo_dst, float x0, float x1) {
  uint32_t h0, l0, h1, l1;
  Split(x0, h0, l0);
  Split(x1, h1, l1);
  *reinterpret_cast<float2*>(hi_dst) = make_float2(__uint_as_float(h0), __uint_as_float(h1));
  *reinterpret_cast<float2*>(lo_dst) = make_float2(__uint_as_float(l0), __uint_as_float(l1));
}

__device__ __forceinline__ void MmaTf32(float (&c)[4], const uint32_t (&a)[4],
                                        const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c += A B (3xTF32, the small terms first).
__device__ __forceinline__ void Mma3(float (&c)[4], const FragA& a, const FragB& b) {
  MmaTf32(c, a.lo, b.hi);
  MmaTf32(c, a.hi, b.lo);
  MmaTf32(c, a.hi, b.hi);
}

// c += A B: 3xTF32 with kSplit, else one tf32 product of the hi parts.
template <bool kSplit>
__device__ __forceinline__ void Mma(float (&c)[4], const FragA& a, const FragB& b) {
  if constexpr (kSplit) {
    Mma3(c, a, b);
  } else {
    MmaTf32(c, a.hi, b.hi);
  }
}

}  // namespace deltaserve::cuda::gdn2_chunk::p2v2

