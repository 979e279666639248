// Gate up-projections (see gate_products.h). One block per 64 x 64 output tile of f or z: the
// tile's 64 weight rows (bf16) arrive by cp.async, the 64 input rows are read as f32 and rounded
// to bf16 into shared memory, and four warps (16 rows each) multiply with mma.sync m16n8k16
// (fragments by ldmatrix), fp32 accumulation, stored straight from the fragments.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/bf16_pack.cuh"
#include "kernels/cuda/gate_products.h"
#include "kernels/cuda/mma_bf16.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

constexpr int kTile = 64;      // rows and columns of an output tile
constexpr int kWarps = 4;      // 16 rows each
constexpr int kMaxRank = 128;
constexpr int kPad = 8;        // bf16 per shared row: 8 consecutive rows start 4 banks apart
constexpr int kRowElems = kMaxRank + kPad;

struct P {
  int rows, tiles_f;
  const void *f0, *g0;
  int64_t ld_in;
  bool in_bf16;  // f0 / g0 bf16, else f32
  const uint16_t *f_up, *z_up;
  float *f, *z;
  int64_t ld_f, ld_z;
  bool programmatic;
};

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddr(smem)));
}

using mma::MmaBf16;

// One quad (four consecutive elements) of an input row: f32 as float4, rounded to bf16 when
// staged; bf16 as uint2, staged as it is.
__device__ __forceinline__ float4 LoadQuad(const float* x) {
  return *reinterpret_cast<const float4*>(x);
}
__device__ __forceinline__ uint2 LoadQuad(const __nv_bfloat16* x) {
  return *reinterpret_cast<const uint2*>(x);
}
__device__ __forceinline__ void StageQuad(uint16_t* dst, float4 v) {
  StoreBf16x4(reinterpret_cast<__nv_bfloat16*>(dst), v.x, v.y, v.z, v.w);
}
__device__ __forceinline__ void StageQuad(uint16_t* dst, uint2 v) {
  *reinterpret_cast<uint2*>(dst) = v;
}

// Stages a tile's input rows into a_s as bf16: x is its first row, rows ld elements apart, and
// rows from `valid` on are zero. Every load is issued before the first is staged.
template <int kPerThread, int kQuads, typename In>
__device__ __forceinline__ void StageInputs(const In* x, int64_t ld, int valid, int tid,
                                            uint16_t (*a_s)[kRowElems]) {
  using Quad = decltype(LoadQuad(x));
  Quad v[kPerThread];
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int i = tid + j * kWarps * 32;
    const int r = i / kQuads, c = i % kQuads;
    v[j] = r < valid ? LoadQuad(x + r * ld + 4 * c) : Quad{};
  }
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int i = tid + j * kWarps * 32;
    StageQuad(&a_s[i / kQuads][4 * (i % kQuads)], v[j]);
  }
}

// NK = rank / 16 k-steps.
template <int NK>
__global__ void __launch_bounds__(kWarps * 32) GateProductsKernel(const P p) {
  constexpr int R = NK * 16;
  __shared__ __align__(16) uint16_t a_s[kTile][kRowElems];  // inputs, bf16
  __shared__ __align__(16) uint16_t b_s[kTile][kRowElems];  // weight rows, bf16
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const bool is_f = static_cast<int>(blockIdx.x) < p.tiles_f;
  const int n0 = (is_f ? blockIdx.x : blockIdx.x - p.tiles_f) * kTile;
  const int m0 = blockIdx.y * kTile;
  const uint16_t* w = (is_f ? p.f_up : p.z_up) + static_cast<int64_t>(n0) * R;

  // Weights first: they do not depend on the kernel before this one.
  constexpr int kChunks = R / 8;  // 16-byte chunks per row
#pragma unroll
  for (int i = tid; i < kTile * kChunks; i += kWarps * 32) {
    const int r = i / kChunks, c = i % kChunks;
    CpAsync16(&b_s[r][c * 8], w + static_cast<int64_t>(r) * R + c * 8);
  }
  CpAsyncCommit();
  if (p.programmatic) {
    cudaTriggerProgrammaticLaunchCompletion();
    cudaGridDependencySynchronize();
  }

  // Inputs: f32 rows rounded to bf16, bf16 rows copied as they are.
  constexpr int kQuads = R / 4;
  constexpr int kPerThread = kTile * kQuads / (kWarps * 32);
  const void* in = is_f ? p.f0 : p.g0;
  const int64_t in0 = static_cast<int64_t>(m0) * p.ld_in;
  if (p.in_bf16) {
    StageInputs<kPerThread, kQuads>(static_cast<const __nv_bfloat16*>(in) + in0, p.ld_in,
                                    p.rows - m0, tid, a_s);
  } else {
    StageInputs<kPerThread, kQuads>(static_cast<const float*>(in) + in0, p.ld_in, p.rows - m0,
                                    tid, a_s);
  }
  CpAsyncWait<0>();
  __syncthreads();

  // Warp `warp`: rows 16 warp.., all 64 columns (8 n-tiles of 8).
  float acc[8][4];
#pragma unroll
  for (int n = 0; n < 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < NK; ++ks) {
    uint32_t a[4];
    LdMatrixX4(a, &a_s[16 * warp + lane % 16][16 * ks + (lane / 16) * 8]);
#pragma unroll
    for (int n = 0; n < 8; n += 2) {
      // Matrices: (n-tile n, k 0-7), (n, k 8-15), (n + 1, k 0-7), (n + 1, k 8-15).
      uint32_t b[4];
      LdMatrixX4(b, &b_s[8 * n + (lane / 16) * 8 + lane % 8][16 * ks + ((lane / 8) % 2) * 8]);
      MmaBf16(acc[n], a, b[0], b[1]);
      MmaBf16(acc[n + 1], a, b[2], b[3]);
    }
  }

  float* out = is_f ? p.f : p.z;
  const int64_t ld = is_f ? p.ld_f : p.ld_z;
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int m = m0 + 16 * warp + g + 8 * half;
    if (m >= p.rows) continue;
    float* o = out + static_cast<int64_t>(m) * ld + n0 + 2 * t;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      *reinterpret_cast<float2*>(o + 8 * n) = make_float2(acc[n][2 * half], acc[n][2 * half + 1]);
    }
  }
}

template <int NK>
absl::Status LaunchT(const P& p, dim3 grid, cudaStream_t stream) {
  return LaunchKernel("GateProductsKernel", GateProductsKernel<NK>, grid, dim3(kWarps * 32), 0,
                      stream, p.programmatic, p);
}

}  // namespace

absl::Status LaunchGateProducts(const GateProductsArgs& a, cudaStream_t stream) {
  if (a.rows < 0) return absl::InvalidArgumentError("gate products: rows < 0");
  if (a.rows == 0) return absl::OkStatus();
  if (a.rank < 16 || a.rank > kMaxRank || a.rank % 16 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("gate products: rank ", a.rank, " must be a multiple of 16 in [16, 128]"));
  if (a.nf <= 0 || a.nz <= 0 || a.nf % kTile != 0 || a.nz % kTile != 0)
    return absl::InvalidArgumentError(absl::StrCat("gate products: nf ", a.nf, " and nz ", a.nz,
                                                   " must be positive multiples of 64"));
  if (a.f0 == nullptr || a.g0 == nullptr || a.f_up == nullptr || a.z_up == nullptr ||
      a.f == nullptr || a.z == nullptr)
    return absl::InvalidArgumentError("gate products: a required tensor is null");
  if (a.ld_in < a.rank || a.ld_f < a.nf || a.ld_z < a.nz)
    return absl::InvalidArgumentError(absl::StrCat("gate products: row strides ", a.ld_in, " / ",
                                                   a.ld_f, " / ", a.ld_z, " below the widths"));
  if (a.in_type != DType::kF32 && a.in_type != DType::kBF16)
    return absl::InvalidArgumentError("gate products: in_type must be f32 or bf16");
  const int64_t in_align = a.in_type == DType::kF32 ? 16 : 8;
  if (a.ld_in % 4 != 0 || a.ld_f % 2 != 0 || a.ld_z % 2 != 0 || !IsAligned(a.f0, in_align) ||
      !IsAligned(a.g0, in_align) || !IsAligned(a.f_up, 16) || !IsAligned(a.z_up, 16) ||
      !IsAligned(a.f, 8) || !IsAligned(a.z, 8))
    return absl::InvalidArgumentError(
        "gate products: inputs must be 16-byte (f32) or 8-byte (bf16) aligned with ld_in % 4 == "
        "0, weights 16-byte aligned, outputs 8-byte aligned with even strides");
  const int64_t row_tiles = (int64_t{a.rows} + kTile - 1) / kTile;
  if (row_tiles > 65535)
    return absl::InvalidArgumentError(absl::StrCat("gate products: ", a.rows, " rows"));
  P p;
  p.rows = a.rows;
  p.tiles_f = static_cast<int>(a.nf / kTile);
  p.f0 = a.f0;
  p.g0 = a.g0;
  p.ld_in = a.ld_in;
  p.in_bf16 = a.in_type == DType::kBF16;
  p.f_up = static_cast<const uint16_t*>(a.f_up);
  p.z_up = static_cast<const uint16_t*>(a.z_up);
  p.f = a.f;
  p.z = a.z;
  p.ld_f = a.ld_f;
  p.ld_z = a.ld_z;
  p.programmatic = a.programmatic;
  const dim3 grid(static_cast<unsigned>((a.nf + a.nz) / kTile), static_cast<unsigned>(row_tiles));
  switch (a.rank / 16) {
    case 1: return LaunchT<1>(p, grid, stream);
    case 2: return LaunchT<2>(p, grid, stream);
    case 3: return LaunchT<3>(p, grid, stream);
    case 4: return LaunchT<4>(p, grid, stream);
    case 5: return LaunchT<5>(p, grid, stream);
    case 6: return LaunchT<6>(p, grid, stream);
    case 7: return LaunchT<7>(p, grid, stream);
    default: return LaunchT<8>(p, grid, stream);
  }
}

}  // namespace deltaserve::cuda
