// Row-wise decode-step kernels (see elementwise.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/activations.cuh"
#include "kernels/cuda/bf16_pack.cuh"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

__global__ void EmbeddingKernel(const __nv_bfloat16* table, int64_t vocab, int64_t d,
                                const int32_t* tokens, float* x) {
  const int64_t r = blockIdx.x;
  const int32_t t = tokens[r];
  float* row = x + r * d;
  if (t < 0 || t >= vocab) {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) row[i] = __int_as_float(0x7fc00000);
    return;
  }
  const __nv_bfloat16* src = table + static_cast<int64_t>(t) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) row[i] = __bfloat162float(src[i]);
}

template <int NT>
__device__ float BlockSum(float v) {
  __shared__ float s[NT / 32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) s[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int w = 0; w < NT / 32; ++w) t += s[w];
    total = t;
  }
  __syncthreads();
  return total;
}

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads)
    RmsNormKernel(const float* x, int64_t ldx, int64_t d, const float* gamma, float eps,
                  __nv_bfloat16* out, int64_t ldo) {
  const float* row = x + blockIdx.x * ldx;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += kNormThreads) ss += row[i] * row[i];
  ss = BlockSum<kNormThreads>(ss);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  __nv_bfloat16* o = out + blockIdx.x * ldo;
  for (int64_t i = threadIdx.x; i < d; i += kNormThreads)
    o[i] = __float2bfloat16_rn(row[i] * inv * gamma[i]);
}

// RmsNormKernel with 16-byte loads and the row held in registers (NV float4 per thread, so
// d <= 4 * NV * kNormThreads): one read of the row, 8-byte stores. Rows of x and gamma
// 16-byte aligned, rows of out 8-byte aligned, d a multiple of 4.
template <int NV>
__global__ void __launch_bounds__(kNormThreads)
    RmsNormVecKernel(const float* x, int64_t ldx, int d4, const float* gamma, float eps,
                     __nv_bfloat16* out, int64_t ldo) {
  const float4* row = reinterpret_cast<const float4*>(x + blockIdx.x * ldx);
  float4 v[NV];
  float ss = 0.0f;
#pragma unroll
  for (int n = 0; n < NV; ++n) {
    const int i = threadIdx.x + n * kNormThreads;
    if (i < d4) {
      v[n] = row[i];
      ss += v[n].x * v[n].x + v[n].y * v[n].y + v[n].z * v[n].z + v[n].w * v[n].w;
    }
  }
  ss = BlockSum<kNormThreads>(ss);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(4 * d4) + eps);
  const float4* g = reinterpret_cast<const float4*>(gamma);
  __nv_bfloat16* o = out + blockIdx.x * ldo;
#pragma unroll
  for (int n = 0; n < NV; ++n) {
    const int i = threadIdx.x + n * kNormThreads;
    if (i < d4) {
      const float4 gg = g[i];
      StoreBf16x4(o + 4 * i, v[n].x * inv * gg.x, v[n].y * inv * gg.y, v[n].z * inv * gg.z,
                  v[n].w * inv * gg.w);
    }
  }
}

// Grids of both SwiGLU kernels: rows on x (up to 2^31 - 1), column blocks on y. H: the input's
// element type (float or __nv_bfloat16).
__device__ __forceinline__ float4 Load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 Load4(const __nv_bfloat16* p) {
  return Bf16x4ToFloat4(*reinterpret_cast<const uint2*>(p));
}
__device__ __forceinline__ float Load1(const float* p) { return *p; }
__device__ __forceinline__ float Load1(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// SwiGluKernel on four columns per thread (one 16-byte f32 or 8-byte bf16 load per half, 8-byte
// stores). Rows of h aligned to four elements, rows of out 8-byte aligned, width a multiple of 4.
template <typename H>
__global__ void SwiGluVecKernel(const H* h, int64_t ldh, int w4, __nv_bfloat16* out,
                                int64_t ldo) {
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= w4) return;
  const int64_t r = blockIdx.x;
  const H* row = h + r * ldh;
  const float4 a = Load4(row + 4 * i), b = Load4(row + 4 * (w4 + i));
  StoreBf16x4(out + r * ldo + 4 * i, Silu(a.x) * b.x, Silu(a.y) * b.y, Silu(a.z) * b.z,
              Silu(a.w) * b.w);
}

template <typename H>
__global__ void SwiGluKernel(const H* h, int64_t ldh, int64_t width, __nv_bfloat16* out,
                             int64_t ldo) {
  const int64_t r = blockIdx.x;
  const H* row = h + r * ldh;
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= width) return;
  out[r * ldo + i] = __float2bfloat16_rn(Silu(Load1(row + i)) * Load1(row + width + i));
}

template <typename H>
absl::Status LaunchSwiGluAs(const H* h, int64_t ldh, int64_t rows, int64_t width,
                            __nv_bfloat16* out, int64_t ldo, cudaStream_t stream) {
  if (width % 4 == 0 && ldh % 4 == 0 && ldo % 4 == 0 && IsAligned(h, 4 * sizeof(H)) &&
      IsAligned(out, 8)) {
    const int w4 = static_cast<int>(width / 4);
    const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((w4 + 255) / 256));
    SwiGluVecKernel<<<grid, 256, 0, stream>>>(h, ldh, w4, out, ldo);
    return LaunchStatus("SwiGluVecKernel");
  }
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((width + 255) / 256));
  SwiGluKernel<<<grid, 256, 0, stream>>>(h, ldh, width, out, ldo);
  return LaunchStatus("SwiGluKernel");
}

// Block (row, column block of 256).
__global__ void CastKernel(const float* in, int64_t ldi, int64_t cols, __nv_bfloat16* out,
                           int64_t ldo) {
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= cols) return;
  const int64_t r = blockIdx.x;
  out[r * ldo + i] = __float2bfloat16_rn(in[r * ldi + i]);
}

__global__ void AdvanceKernel(char* pool, int64_t stride, int64_t off, const int32_t* slots,
                              int64_t rows) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rows || slots[r] < 0) return;
  int64_t* p = reinterpret_cast<int64_t*>(pool + slots[r] * stride + off);
  *p += 1;
}

__global__ void FillRandomKernel(void* out, bool bf16, int64_t n, uint64_t seed, float scale,
                                 float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i) + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    const float v = offset + scale * (2.0f * u - 1.0f);
    if (bf16) {
      static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
    } else {
      static_cast<float*>(out)[i] = v;
    }
  }
}

absl::Status CheckRows(const char* op, int64_t rows) {
  if (rows < 0 || rows > (int64_t{1} << 31) - 1)
    return absl::InvalidArgumentError(absl::StrCat(op, ": rows ", rows, " out of range"));
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchEmbedding(const void* table, int64_t vocab, int64_t d, const int32_t* tokens,
                             int64_t rows, float* x, cudaStream_t stream) {
  if (absl::Status s = CheckRows("embedding", rows); !s.ok()) return s;
  if (vocab <= 0 || d <= 0) return absl::InvalidArgumentError("embedding: empty table");
  if (rows == 0) return absl::OkStatus();
  EmbeddingKernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(table), vocab, d, tokens, x);
  return LaunchStatus("EmbeddingKernel");
}

absl::Status LaunchRmsNormToBf16(const float* x, int64_t ldx, int64_t rows, int64_t d,
                                 const float* gamma, float eps, void* out, int64_t ldo,
                                 cudaStream_t stream) {
  if (absl::Status s = CheckRows("rmsnorm", rows); !s.ok()) return s;
  if (d <= 0 || ldx < d || ldo < d)
    return absl::InvalidArgumentError(absl::StrCat("rmsnorm: d=", d, " ldx=", ldx, " ldo=", ldo));
  if (rows == 0) return absl::OkStatus();
  auto* o = static_cast<__nv_bfloat16*>(out);
  const bool vec = d % 4 == 0 && ldx % 4 == 0 && ldo % 4 == 0 && IsAligned(x, 16) &&
                   IsAligned(gamma, 16) && IsAligned(out, 8);
  const int64_t per_thread = (d / 4 + kNormThreads - 1) / kNormThreads;  // float4 per thread
  if (vec && per_thread <= 8) {
    auto kernel = per_thread <= 1   ? RmsNormVecKernel<1>
                  : per_thread <= 2 ? RmsNormVecKernel<2>
                  : per_thread <= 4 ? RmsNormVecKernel<4>
                                    : RmsNormVecKernel<8>;
    kernel<<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(
        x, ldx, static_cast<int>(d / 4), gamma, eps, o, ldo);
    return LaunchStatus("RmsNormVecKernel");
  }
  RmsNormKernel<<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(x, ldx, d, gamma, eps,
                                                                          o, ldo);
  return LaunchStatus("RmsNormKernel");
}

absl::Status LaunchSwiGlu(const void* h, DType h_type, int64_t ldh, int64_t rows, int64_t width,
                          void* out, int64_t ldo, cudaStream_t stream) {
  if (absl::Status s = CheckRows("swiglu", rows); !s.ok()) return s;
  if (width <= 0 || width > int64_t{65535} * 256 || ldh < 2 * width || ldo < width)
    return absl::InvalidArgumentError(
        absl::StrCat("swiglu: width=", width, " ldh=", ldh, " ldo=", ldo));
  if (rows == 0) return absl::OkStatus();
  auto* o = static_cast<__nv_bfloat16*>(out);
  if (h_type == DType::kBF16)
    return LaunchSwiGluAs(static_cast<const __nv_bfloat16*>(h), ldh, rows, width, o, ldo, stream);
  return LaunchSwiGluAs(static_cast<const float*>(h), ldh, rows, width, o, ldo, stream);
}

absl::Status LaunchCastToBf16(const float* in, int64_t ldi, int64_t rows, int64_t cols, void* out,
                              int64_t ldo, cudaStream_t stream) {
  if (absl::Status s = CheckRows("cast", rows); !s.ok()) return s;
  if (cols <= 0 || cols > int64_t{65535} * 256 || ldi < cols || ldo < cols)
    return absl::InvalidArgumentError(absl::StrCat("cast: cols=", cols, " ldi=", ldi, " ldo=", ldo));
  if (rows == 0) return absl::OkStatus();
  dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((cols + 255) / 256));
  CastKernel<<<grid, 256, 0, stream>>>(in, ldi, cols, static_cast<__nv_bfloat16*>(out), ldo);
  return LaunchStatus("CastKernel");
}

absl::Status LaunchAdvancePositions(void* pool, int64_t slot_stride, int64_t position_offset,
                                    const int32_t* slots, int64_t rows, cudaStream_t stream) {
  if (absl::Status s = CheckRows("advance positions", rows); !s.ok()) return s;
  if (position_offset < 0 || position_offset % 8 != 0 || position_offset + 8 > slot_stride ||
      slot_stride % 8 != 0)
    return absl::InvalidArgumentError(absl::StrCat("advance positions: position_offset ",
                                                   position_offset, " / slot stride ", slot_stride));
  if (rows == 0) return absl::OkStatus();
  AdvanceKernel<<<static_cast<unsigned>((rows + 127) / 128), 128, 0, stream>>>(
      static_cast<char*>(pool), slot_stride, position_offset, slots, rows);
  return LaunchStatus("AdvanceKernel");
}

absl::Status LaunchFillRandom(void* out, DType type, int64_t n, uint64_t seed, float scale,
                              float offset, cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError("fill random: negative size");
  if (n == 0) return absl::OkStatus();
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 132 * 16);
  FillRandomKernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      out, type == DType::kBF16, n, seed, scale, offset);
  return LaunchStatus("FillRandomKernel");
}

}  // namespace deltaserve::cuda
