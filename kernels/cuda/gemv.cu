// Small-batch bf16 matrix products with fused RMSNorm / cast / SwiGLU / residual add (see gemv.h).
//
// One warp owns R weight rows (SwiGLU: row j of w1 and row j of w2; R = 8 for rows of at most
// 256 elements at 1-2 input rows, else 1) over the whole k range; lane l reads 16-byte chunks
// l, l + 32, ... of each row, 8 chunks per lane in flight (R * U = 8, two register batches: the
// next batch is issued before the current one is consumed). The block's
// input rows are staged in shared memory as bf16 (for RMSNorm input x * gamma, the 1/rms factor
// applied to the sums), so the inner product is 8 bf16 pairs per chunk and input row. Warp sums
// by shuffles; no atomics, so results are deterministic.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

struct Prob {
  const void* x;
  int64_t ldx;
  const uint16_t* w;
  int64_t ldw;
  int64_t n;
  void* out;
  int64_t ldo;
};

struct Params {
  int rows;
  int k;
  int kc;  // k / 8
  const float* gamma;
  float eps;
  bool x_vec;  // every problem's x allows 16-byte row loads (aligned, stride a multiple of 16 B)
  Prob pr[kGemvMaxProblems];
  int blocks0;  // blocks of problem 0; the rest serve problem 1
};

__device__ __forceinline__ uint4 LoadStream(const uint16_t* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float Lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float Hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

__device__ __forceinline__ float Dot8(const uint4& w, const uint4& x, float acc) {
  acc = fmaf(Lo(w.x), Lo(x.x), acc);
  acc = fmaf(Hi(w.x), Hi(x.x), acc);
  acc = fmaf(Lo(w.y), Lo(x.y), acc);
  acc = fmaf(Hi(w.y), Hi(x.y), acc);
  acc = fmaf(Lo(w.z), Lo(x.z), acc);
  acc = fmaf(Hi(w.z), Hi(x.z), acc);
  acc = fmaf(Lo(w.w), Lo(x.w), acc);
  acc = fmaf(Hi(w.w), Hi(x.w), acc);
  return acc;
}

__device__ __forceinline__ uint16_t ToBf16Bits(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Stages input rows [0, MT) of x (row stride ldx) into xs as bf16 bits; rows >= p.rows are
// zero. Vector loads (all of a thread's loads in flight before its stores) where x allows them.
// RMSNorm input: xs holds x * gamma, and red[warp][m] this warp's share of sum(x^2) of row m
// (NormScale turns them into the 1/rms factor of the sums), so staging takes one pass over x
// and no barrier of its own.
template <int MT, GemvInput IN, int B>
__device__ __forceinline__ void StageInput(const Params& p, const Prob& pr, uint16_t* xs,
                                           float (*red)[MT]) {
  const int k = p.k, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  constexpr int NT = kThreads;
  if constexpr (IN == GemvInput::kBf16) {
    const uint16_t* x = static_cast<const uint16_t*>(pr.x);
    if (p.x_vec) {
      const int kc = p.kc, total = MT * kc;
      for (int i0 = 0; i0 < total; i0 += NT * B) {
        uint4 v[B];
#pragma unroll
        for (int j = 0; j < B; ++j) {
          const int i = i0 + j * NT + tid, m = i / kc, c = i - m * kc;
          v[j] = i < total && m < p.rows
                     ? __ldg(reinterpret_cast<const uint4*>(x + m * pr.ldx) + c)
                     : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int j = 0; j < B; ++j) {
          const int i = i0 + j * NT + tid;
          if (i < total) reinterpret_cast<uint4*>(xs)[i] = v[j];
        }
      }
    } else {
      for (int m = 0; m < MT; ++m)
        for (int i = tid; i < k; i += NT) xs[m * k + i] = m < p.rows ? x[m * pr.ldx + i] : 0;
    }
  } else {
    const float* x = static_cast<const float*>(pr.x);
    constexpr bool kNorm = IN == GemvInput::kF32RmsNorm;
    float ss[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) ss[m] = 0.0f;
    if (p.x_vec) {
      const int k4 = k / 4, total = MT * k4;
      for (int i0 = 0; i0 < total; i0 += NT * B) {
        float4 v[B], g[B];
#pragma unroll
        for (int j = 0; j < B; ++j) {
          const int i = i0 + j * NT + tid, m = i / k4, c = i - m * k4;
          const bool ok = i < total && m < p.rows;
          v[j] = ok ? __ldg(reinterpret_cast<const float4*>(x + m * pr.ldx) + c)
                    : make_float4(0.f, 0.f, 0.f, 0.f);
          if constexpr (kNorm) {
            g[j] = ok ? __ldg(reinterpret_cast<const float4*>(p.gamma) + c)
                      : make_float4(0.f, 0.f, 0.f, 0.f);
          }
        }
#pragma unroll
        for (int j = 0; j < B; ++j) {
          const int i = i0 + j * NT + tid, m = i / k4;
          if (i >= total) continue;
          float4 o = v[j];
          if constexpr (kNorm) {
            const float t = o.x * o.x + o.y * o.y + o.z * o.z + o.w * o.w;
#pragma unroll
            for (int mm = 0; mm < MT; ++mm) ss[mm] += mm == m ? t : 0.0f;
            o = make_float4(o.x * g[j].x, o.y * g[j].y, o.z * g[j].z, o.w * g[j].w);
          }
          uint2 bits;
          bits.x = uint32_t{ToBf16Bits(o.x)} | (uint32_t{ToBf16Bits(o.y)} << 16);
          bits.y = uint32_t{ToBf16Bits(o.z)} | (uint32_t{ToBf16Bits(o.w)} << 16);
          reinterpret_cast<uint2*>(xs)[i] = bits;
        }
      }
    } else {
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        for (int i = tid; i < k; i += NT) {
          float v = 0.0f;
          if (m < p.rows) {
            v = x[m * pr.ldx + i];
            if constexpr (kNorm) {
              ss[m] = fmaf(v, v, ss[m]);
              v *= p.gamma[i];
            }
          }
          xs[m * k + i] = ToBf16Bits(v);
        }
      }
    }
    if constexpr (kNorm) {
#pragma unroll
      for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss[m] += __shfl_xor_sync(0xffffffffu, ss[m], o);
        if (lane == 0) red[warp][m] = ss[m];
      }
    }
  }
}

// The factor every sum of row m is scaled by: 1/rms(x_m) for RMSNorm input (from StageInput's
// partial sums, after the barrier that follows it), else 1.
template <int MT, GemvInput IN>
__device__ __forceinline__ void NormScale(const Params& p, const float (*red)[MT],
                                          float (&scale)[MT]) {
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    scale[m] = 1.0f;
    if constexpr (IN == GemvInput::kF32RmsNorm) {
      float t = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) t += red[w][m];
      scale[m] = 1.0f / sqrtf(t / static_cast<float>(p.k) + p.eps);
    }
  }
}

// Loads per thread in flight while staging the input rows. RMSNorm input at 1-2 rows with a
// plain output takes 4: its staging registers then leave room for a fifth resident block per
// SM (94-96 registers instead of 128), which streams the weights faster (bench/NOTES.md,
// "RMSNorm staging"); the SwiGLU product measured slower with the fifth block, so it keeps 8.
template <int MT, GemvInput IN, GemvOutput OUT>
constexpr int kStageBatch =
    IN == GemvInput::kF32RmsNorm && MT <= 2 && OUT != GemvOutput::kSwiGluBf16 ? 4 : 8;

template <int MT, int R, GemvInput IN, GemvOutput OUT>
__global__ void __launch_bounds__(kThreads) GemvKernel(const Params p) {
  extern __shared__ __align__(16) uint16_t xs[];  // [MT][k] bf16 bits
  __shared__ float red[kWarps][MT];
  constexpr bool kSwiGlu = OUT == GemvOutput::kSwiGluBf16;
  constexpr int U = 8 / R;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int blk = blockIdx.x, nblk = p.blocks0;
  const bool second = blk >= p.blocks0;
  if (second) {
    blk -= p.blocks0;
    nblk = gridDim.x - p.blocks0;
  }
  const Prob pr = second ? p.pr[1] : p.pr[0];
  const int64_t nunits = kSwiGlu ? pr.n : (pr.n + R - 1) / R;
  const int64_t ustride = static_cast<int64_t>(nblk) * kWarps;
  // Chunks per lane ni, in nb batches of ub <= U (balanced, so no batch is nearly empty).
  const int kc = p.kc, ni = (kc + 31) / 32, nb = (ni + U - 1) / U, ub = (ni + nb - 1) / nb;

  uint4 buf[R][U];
  auto load = [&](int64_t un, int b) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = kSwiGlu ? un + r * pr.n : un * R + r;
      const bool rv = kSwiGlu || row < pr.n;
      const uint16_t* wr = pr.w + row * pr.ldw;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int i = b * ub + u, c = lane + 32 * i;
        if (rv && u < ub && i < ni && c < kc) {
          buf[r][u] = LoadStream(wr + static_cast<int64_t>(c) * 8);
        } else {
          buf[r][u] = make_uint4(0u, 0u, 0u, 0u);
        }
      }
    }
  };
  int64_t un = static_cast<int64_t>(blk) * kWarps + warp;
  int b = 0;
  // Weights are constant: the first batch is in flight before the predecessor has finished.
  if (un < nunits) load(un, 0);
  cudaTriggerProgrammaticLaunchCompletion();
  cudaGridDependencySynchronize();
  // Residual add: lane m * R + r (the lane that stores input row m, weight row r of a unit)
  // loads that output's old value a unit ahead of its store, so the store does not wait on it.
  constexpr bool kAcc = OUT == GemvOutput::kF32Accumulate;
  float* const acc_out = kAcc && lane < MT * R
                             ? static_cast<float*>(pr.out) + (lane / R) * pr.ldo + lane % R
                             : nullptr;
  const bool acc_lane = acc_out != nullptr && lane / R < p.rows;
  auto load_old = [&](int64_t u) {
    return acc_lane && u < nunits && u * R + lane % R < pr.n ? acc_out[u * R] : 0.0f;
  };
  float old = load_old(un);
  StageInput<MT, IN, kStageBatch<MT, IN, OUT>>(p, pr, xs, red);
  __syncthreads();
  float scale[MT];
  NormScale<MT, IN>(p, red, scale);

  float acc[MT][R];
#pragma unroll
  for (int m = 0; m < MT; ++m) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[m][r] = 0.0f;
  }
  const int k = p.k;
  while (un < nunits) {
    uint4 cur[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int u = 0; u < U; ++u) cur[r][u] = buf[r][u];
    }
    // Issue the next step's loads (the next batch, or the next unit's first) before using these.
    int64_t un2 = un;
    int b2 = b + 1;
    if (b2 == nb) {
      b2 = 0;
      un2 += ustride;
    }
    if (un2 < nunits) load(un2, b2);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = lane + 32 * (b * ub + u);
      if (u < ub && c < kc) {
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          const uint4 xv = reinterpret_cast<const uint4*>(xs + m * k)[c];
#pragma unroll
          for (int r = 0; r < R; ++r) acc[m][r] = Dot8(cur[r][u], xv, acc[m][r]);
        }
      }
    }
    if (b == nb - 1) {
#pragma unroll
      for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], o);
        }
      }
      // Lane m * R + r stores (row m, weight row r).
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < p.rows) {
          if constexpr (kSwiGlu) {
            if (lane == m) {
              const float a = acc[m][0] * scale[m];
              static_cast<__nv_bfloat16*>(pr.out)[m * pr.ldo + un] =
                  __float2bfloat16_rn(a / (1.0f + __expf(-a)) * (acc[m][1] * scale[m]));
            }
          } else {
#pragma unroll
            for (int r = 0; r < R; ++r) {
              if (lane == m * R + r && un * R + r < pr.n) {
                float* o = static_cast<float*>(pr.out) + m * pr.ldo + un * R + r;
                *o = acc[m][r] * scale[m] + (kAcc ? old : 0.0f);
              }
            }
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) acc[m][r] = 0.0f;
      }
      if constexpr (kAcc) old = load_old(un2);  // un2: the next unit (b2 == 0 here)
    }
    un = un2;
    b = b2;
  }
}

// Launches with at most as many blocks as can be resident at once (each warp loops over its
// units), split between the problems in proportion to their units. n0, n1: the problems' rows.
template <int MT, int R, GemvInput IN, GemvOutput OUT>
absl::Status LaunchTyped(Params p, int64_t n0, int64_t n1, bool programmatic,
                         cudaStream_t stream) {
  auto kernel = GemvKernel<MT, R, IN, OUT>;
  constexpr bool kSwiGlu = OUT == GemvOutput::kSwiGluBf16;
  const int64_t units0 = kSwiGlu ? n0 : (n0 + R - 1) / R;
  const int64_t units1 = kSwiGlu ? n1 : (n1 + R - 1) / R;
  const int smem = MT * p.k * 2;
  // Per instantiation, cached for the last shared-memory size (a benign race: idempotent).
  static int smem_set = 48 << 10, occ_smem = -1, occ_blocks = 0;
  if (smem > smem_set) {
    DS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    smem_set = smem;
  }
  if (occ_smem != smem) {
    int nb = 0;
    DS_CUDA_RETURN_IF_ERROR(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kernel, kThreads, smem));
    occ_blocks = std::max(nb, 1);
    occ_smem = smem;
  }
  const int64_t cap = int64_t{occ_blocks} * NumSms();
  const int64_t need0 = (units0 + kWarps - 1) / kWarps, need1 = (units1 + kWarps - 1) / kWarps;
  int64_t b0 = need0, b1 = need1;
  if (b0 + b1 > cap) {
    b0 = std::clamp<int64_t>(cap * units0 / (units0 + units1), 1, need0);
    b1 = std::min<int64_t>(need1, std::max<int64_t>(cap - b0, units1 > 0 ? 1 : 0));
  }
  p.blocks0 = static_cast<int>(b0);
  return LaunchKernel("GemvKernel", kernel, dim3(static_cast<unsigned>(b0 + b1)), dim3(kThreads),
                      smem, stream, programmatic, p);
}

template <int MT, GemvInput IN>
absl::Status DispatchOut(const GemvArgs& a, const Params& p, int64_t u0, int64_t u1,
                         cudaStream_t s) {
  const bool pdl = a.programmatic;
  // Short rows (k <= 256: one 16-byte chunk per lane) at 1-2 input rows: eight weight rows per
  // warp step, so each lane still has 8 loads in flight and the grid is 8x smaller, which leaves
  // room on the SMs for the next launch's blocks to become resident and start their own loads.
  const bool short_rows = MT <= 2 && p.kc <= 32;
  switch (a.output) {
    case GemvOutput::kF32:
      return short_rows ? LaunchTyped<MT, 8, IN, GemvOutput::kF32>(p, u0, u1, pdl, s)
                        : LaunchTyped<MT, 1, IN, GemvOutput::kF32>(p, u0, u1, pdl, s);
    case GemvOutput::kF32Accumulate:
      return short_rows ? LaunchTyped<MT, 8, IN, GemvOutput::kF32Accumulate>(p, u0, u1, pdl, s)
                        : LaunchTyped<MT, 1, IN, GemvOutput::kF32Accumulate>(p, u0, u1, pdl, s);
    case GemvOutput::kSwiGluBf16:
      return LaunchTyped<MT, 2, IN, GemvOutput::kSwiGluBf16>(p, u0, u1, pdl, s);
  }
  return absl::InternalError("gemv: unknown output kind");
}

template <int MT>
absl::Status DispatchIn(const GemvArgs& a, const Params& p, int64_t u0, int64_t u1,
                        cudaStream_t s) {
  switch (a.input) {
    case GemvInput::kBf16: return DispatchOut<MT, GemvInput::kBf16>(a, p, u0, u1, s);
    case GemvInput::kF32: return DispatchOut<MT, GemvInput::kF32>(a, p, u0, u1, s);
    case GemvInput::kF32RmsNorm: return DispatchOut<MT, GemvInput::kF32RmsNorm>(a, p, u0, u1, s);
  }
  return absl::InternalError("gemv: unknown input kind");
}

int SharedMemOptin() {
  static int optin = [] {
    int dev = 0, v = 48 << 10;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
      cudaGetLastError();
      v = 48 << 10;
    }
    return v;
  }();
  return optin;
}

}  // namespace

int64_t GemvBytes(const GemvArgs& a) {
  int64_t bytes = 0;
  const int xb = a.input == GemvInput::kBf16 ? 2 : 4;
  for (int i = 0; i < a.num_problems && i < kGemvMaxProblems; ++i) {
    const GemvProblem& pr = a.problems[i];
    const int64_t wrows = a.output == GemvOutput::kSwiGluBf16 ? 2 * pr.n : pr.n;
    bytes += wrows * a.k * 2 + int64_t{a.rows} * a.k * xb;
    const int ob = a.output == GemvOutput::kSwiGluBf16 ? 2 : 4;
    bytes += int64_t{a.rows} * pr.n * ob * (a.output == GemvOutput::kF32Accumulate ? 2 : 1);
  }
  if (a.input == GemvInput::kF32RmsNorm) bytes += a.k * 4;
  return bytes;
}

absl::Status LaunchGemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.rows < 0 || a.rows > kGemvMaxRows)
    return absl::InvalidArgumentError(
        absl::StrCat("gemv: rows ", a.rows, " not in [0, ", kGemvMaxRows, "]"));
  if (a.num_problems < 1 || a.num_problems > kGemvMaxProblems)
    return absl::InvalidArgumentError(absl::StrCat("gemv: num_problems ", a.num_problems,
                                                   " not in [1, ", kGemvMaxProblems, "]"));
  if (a.k <= 0 || a.k % 8 != 0 || a.k > INT_MAX / 2)
    return absl::InvalidArgumentError(
        absl::StrCat("gemv: k ", a.k, " must be a positive multiple of 8"));
  if (a.input == GemvInput::kF32RmsNorm && a.gamma == nullptr)
    return absl::InvalidArgumentError("gemv: gamma is null (RMSNorm input)");
  for (int i = 0; i < a.num_problems; ++i) {
    const GemvProblem& pr = a.problems[i];
    const std::string at = absl::StrCat("gemv: problem ", i, ": ");
    if (pr.n <= 0 || pr.n > (int64_t{1} << 30))
      return absl::InvalidArgumentError(absl::StrCat(at, "n ", pr.n, " out of range"));
    if (pr.x == nullptr || pr.w == nullptr || pr.out == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(at, "x, w or out is null"));
    if (reinterpret_cast<uintptr_t>(pr.w) % 16 != 0)
      return absl::InvalidArgumentError(absl::StrCat(at, "w is not 16-byte aligned"));
    if (pr.ldw < a.k || pr.ldw % 8 != 0)
      return absl::InvalidArgumentError(
          absl::StrCat(at, "ldw ", pr.ldw, " must be >= k (", a.k, ") and a multiple of 8"));
    if (a.rows > 1 && pr.ldx < a.k)
      return absl::InvalidArgumentError(absl::StrCat(at, "ldx ", pr.ldx, " below k ", a.k));
    if (a.rows > 1 && pr.ldo < pr.n)
      return absl::InvalidArgumentError(absl::StrCat(at, "ldo ", pr.ldo, " below n ", pr.n));
  }
  if (a.rows == 0) return absl::OkStatus();
  const int MT = a.rows <= 1 ? 1 : a.rows <= 2 ? 2 : a.rows <= 4 ? 4 : 8;
  const int64_t smem = int64_t{MT} * a.k * 2;
  if (smem > SharedMemOptin())
    return absl::InvalidArgumentError(absl::StrCat("gemv: staged input (", smem,
                                                   " bytes for k = ", a.k,
                                                   ") exceeds shared memory per block"));
  // Units: one weight row per warp step (SwiGLU: the w1 and w2 rows of one output column).
  Params p;
  p.rows = a.rows;
  p.k = static_cast<int>(a.k);
  p.kc = static_cast<int>(a.k / 8);
  p.gamma = a.gamma;
  p.eps = a.eps;
  const int xe = a.input == GemvInput::kBf16 ? 2 : 4;
  p.x_vec = a.input != GemvInput::kF32RmsNorm ||
            reinterpret_cast<uintptr_t>(a.gamma) % 16 == 0;
  for (int i = 0; i < kGemvMaxProblems; ++i) {
    const GemvProblem& src = a.problems[std::min(i, a.num_problems - 1)];
    p.pr[i] = Prob{src.x, src.ldx, static_cast<const uint16_t*>(src.w), src.ldw, src.n, src.out,
                   src.ldo};
    if (reinterpret_cast<uintptr_t>(src.x) % 16 != 0 || (a.rows > 1 && (src.ldx * xe) % 16 != 0))
      p.x_vec = false;
  }
  p.blocks0 = 0;
  const int64_t u0 = a.problems[0].n, u1 = a.num_problems > 1 ? a.problems[1].n : 0;
  switch (MT) {
    case 1: return DispatchIn<1>(a, p, u0, u1, stream);
    case 2: return DispatchIn<2>(a, p, u0, u1, stream);
    case 4: return DispatchIn<4>(a, p, u0, u1, stream);
    default: return DispatchIn<8>(a, p, u0, u1, stream);
  }
}

}  // namespace deltaserve::cuda
