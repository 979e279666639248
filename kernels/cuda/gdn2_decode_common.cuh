// Device-side pieces shared by the GDN-2 decode kernels (gdn2_decode.cu: the launcher and the
// streamed recurrence; gdn2_decode_kernels.cu: the fused and prep kernels): the kernel parameter
// block, the prep-record layout, 16-byte state vectors, the tile geometry, block and
// column reductions, the conv-history shift and the tile-shape dispatch (asynchronous copies and
// mbarriers come from async_copy.cuh, SiLU and sigmoid from activations.cuh). Include only from
// CUDA sources of kernels/cuda.
//
// Thread-safety: device helpers are per-thread or per-block as documented on each.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/activations.cuh"
#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda::gdn2_detail {

constexpr int kMaxConv = 8;
constexpr int kMaxCluster = 8;

struct Params {
  int H, HV, dv, W, G, S;
  bool neg_eig, gate_sigmoid;
  float eps;
  int key_dim, value_dim;
  const int32_t* slots;
  char* pool;
  int64_t num_slots, slot_stride, rec_off, cq_off, ck_off, cv_off;
  const void *q_raw, *k_raw, *v_raw, *b_raw, *w_raw;  // raw_bf16 ? bf16 : f32 (see LoadRaw)
  bool raw_bf16;
  const float *f_raw, *z_raw;
  int64_t q_st, k_st, v_st, b_st, w_st, f_st, z_st;
  const float *q_cw, *k_cw, *v_cw, *a_log, *dt_bias, *z_bias, *o_norm;
  void* y;
  int64_t y_st;
  bool y_bf16;
  float* prep;        // kStreamed: PrepRowFloats floats per batch row (see there)
  int64_t prep_row;   // PrepRowFloats(H, dk, value_dim)
  // kStreamed: fetch state tiles with an L2 evict_last policy and store them with write-back
  // stores (large launches, see kStateEvictLastBytes in gdn2_decode.cu).
  bool state_evict_last;
  // kStreamed: blocks with a linear index below ramp_blocks (the first wave of resident tiles,
  // or 0) wait index * ramp_ns / ramp_blocks nanoseconds before they start their tile copy
  // (kFirstWaveRampNs in gdn2_decode.cu).
  int ramp_blocks, ramp_ns;
  bool overlap;      // kFused: programmatic dependent of the previous kernel
  bool state_ready;  // with overlap: slots, state and histories may be read before the wait
  // Fused with gate_rank > 0: f_raw / z_raw are the rank-r inputs, f_up / z_up the bf16
  // up-projections (gdn2_decode.h).
  int gate_rank;
  const uint16_t *f_up, *z_up;
};

// Element i of a raw projection output (q_raw .. w_raw), as fp32.
__device__ __forceinline__ float LoadRaw(const void* base, int64_t i, bool bf16) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i])
              : static_cast<const float*>(base)[i];
}

// Prep record of one (sequence, key head): q^ | k^ | alpha | b*k^ (DK each), then k.q, padded.
__host__ __device__ constexpr int64_t PrepStride(int dk) { return 4 * int64_t{dk} + 4; }

// kStreamed's prep scratch, one row of PrepRowFloats floats per batch row b, laid out the same
// whatever the batch size:
//   H records of PrepStride(dk) floats, one per key head;
//   value_dim floats of w*v;
//   H ready words (uint32, padded to 4): the number of value heads that have not yet consumed
//   the key head's record. The prep kernel publishes a record by storing G = HV/H there (release)
//   and each recurrence block takes one away after its acquire, so every completed launch leaves
//   the words zero, which is also what they must be before the first launch.
// Every part starts 16-byte aligned.
__host__ __device__ constexpr int64_t PrepRowFloats(int H, int dk, int value_dim) {
  return H * PrepStride(dk) + value_dim + (H + 3) / 4 * 4;
}
__device__ __forceinline__ float* PrepRecord(const Params& p, int b, int kh, int dk) {
  return p.prep + b * p.prep_row + kh * PrepStride(dk);
}
__device__ __forceinline__ float* PrepWv(const Params& p, int b, int dk) {
  return p.prep + b * p.prep_row + p.H * PrepStride(dk);
}
__device__ __forceinline__ unsigned* PrepReady(const Params& p, int b, int dk) {
  return reinterpret_cast<unsigned*>(PrepWv(p, b, dk) + p.value_dim);
}

__device__ __forceinline__ float Softplus(float x) {
  return x > 20.0f ? x : log1pf(__expf(x));
}

// 16-byte vector of state elements, converted to/from fp32. Loads carry the streaming cache hint
// (.cs); stores too unless STREAMING is false (then write-back stores, through the intrinsic:
// written as a C++ float4 assignment the store compiled to four scalar stores, and the streamed
// recurrence ran 20-25 % slower).
template <typename T>
struct StateVec;

template <>
struct StateVec<float> {
  static constexpr int N = 4;
  __device__ __forceinline__ static void Load(const float* p, float* out) {
    float4 v = __ldcs(reinterpret_cast<const float4*>(p));
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
  }
  template <bool STREAMING = true>
  __device__ __forceinline__ static void Store(float* p, const float* in) {
    const float4 v = make_float4(in[0], in[1], in[2], in[3]);
    if (STREAMING) {
      __stcs(reinterpret_cast<float4*>(p), v);
    } else {
      __stwb(reinterpret_cast<float4*>(p), v);
    }
  }
};

template <>
struct StateVec<__nv_bfloat16> {
  static constexpr int N = 8;
  __device__ __forceinline__ static void Load(const __nv_bfloat16* p, float* out) {
    uint4 v = __ldcs(reinterpret_cast<const uint4*>(p));
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
  template <bool STREAMING = true>
  __device__ __forceinline__ static void Store(__nv_bfloat16* p, const float* in) {
    uint4 v;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
    if (STREAMING) {
      __stcs(reinterpret_cast<uint4*>(p), v);
    } else {
      __stwb(reinterpret_cast<uint4*>(p), v);
    }
  }
};

// Geometry of a [DK, DVS] tile handled by one block of at most MAXT threads, each owning
// 16-byte units (VEC elements of one row).
template <typename T, int DK, int DVS, int MAXT = 256>
struct Tile {
  static constexpr int VEC = StateVec<T>::N;
  static constexpr int CG = DVS / VEC;             // column groups (threads along a row)
  static constexpr int UNITS = DK * CG;            // 16-byte units in the tile
  static constexpr int NT = UNITS < MAXT ? UNITS : MAXT;
  static constexpr int ROWS = UNITS / NT;          // rows per thread
  static constexpr int RG = NT / CG;               // row groups
  static constexpr int NW = NT / 32;
  static_assert(CG <= 32 && 32 % CG == 0, "column groups must divide a warp");
  static_assert(NT % 32 == 0 && UNITS % NT == 0, "tile must fill whole warps");
};

// Sums `v` over the block; `scratch` holds NW floats. Every thread gets the total.
template <int NW>
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < NW; ++w) t += scratch[w];
  return t;
}

// r[v] and oq[v] hold this thread's partial sums, over its rows, of S_bar^T (b*k) and S_bar^T q
// for its VEC columns. Sums them over the row groups inside the warp (lanes that differ in bits
// >= log2(CG)), so every lane ends with its warp's column sums.
template <int CG, int VEC>
__device__ __forceinline__ void WarpSumColumns(float (&r)[VEC], float (&oq)[VEC]) {
#pragma unroll
  for (int o = CG; o < 32; o <<= 1) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      r[v] += __shfl_xor_sync(0xffffffffu, r[v], o);
      oq[v] += __shfl_xor_sync(0xffffffffu, oq[v], o);
    }
  }
}

__device__ __forceinline__ void ShiftHistory(float* hist, int64_t row_stride, int W, float x) {
  if (W <= 1) return;
#pragma unroll
  for (int j = 0; j < kMaxConv - 2; ++j) {
    if (j < W - 2) hist[j * row_stride] = hist[(j + 1) * row_stride];
  }
  hist[(W - 2) * row_stride] = x;
}

template <typename T>
__device__ __forceinline__ void SmemUnitToFloat(const T* src, float* out) {
  if constexpr (sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
  } else {
    const uint4 v = *reinterpret_cast<const uint4*>(src);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
}

// Runs f.template operator()<DK, DV>() for the tile shapes the kernels are built for: dk in
// {32, 64, 128}, dv (columns per block) in {16, 32, 64, 128}, {16, 32} at dk 32. Other shapes:
// InvalidArgument starting with `what`.
template <typename F>
absl::Status DispatchTileShape(int dk, int dv, const char* what, F&& f) {
  if (dk == 32) {
    if (dv == 16) return f.template operator()<32, 16>();
    if (dv == 32) return f.template operator()<32, 32>();
    return absl::InvalidArgumentError(
        absl::StrCat(what, "with head_k_dim 32, columns per block ", dv, " not in {16,32}"));
  }
  if (dk != 64 && dk != 128)
    return absl::InvalidArgumentError(absl::StrCat(what, "head_k_dim ", dk, " not in {32,64,128}"));
  switch (dv) {
    case 16: return dk == 64 ? f.template operator()<64, 16>() : f.template operator()<128, 16>();
    case 32: return dk == 64 ? f.template operator()<64, 32>() : f.template operator()<128, 32>();
    case 64: return dk == 64 ? f.template operator()<64, 64>() : f.template operator()<128, 64>();
    case 128:
      return dk == 64 ? f.template operator()<64, 128>() : f.template operator()<128, 128>();
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, "columns per block ", dv, " not in {16,32,64,128}"));
}

// Launchers in gdn2_decode_kernels.cu. `p` is filled and validated by LaunchGdn2Decode.
// Fused: one block per (sequence, value head, split), dvs = dv / p.S columns each.
absl::Status LaunchFused(const Params& p, int dk, int dvs, DType state_type, int batch,
                           cudaStream_t stream);
// The prep kernel of kStreamed: writes the prep record (PrepStride) and w*v. dv = the whole
// head_v_dim.
absl::Status LaunchPrep(const Params& p, int dk, int dv, int batch, cudaStream_t stream);
// Registers the prep kernel's resident blocks take on one SM (allocated per warp in units of
// 256), for a launch with these shapes; the recurrence blocks beside them share the rest.
absl::Status PrepRegistersPerSm(const Params& p, int dk, int dv, int* regs);

// Registers a block of `threads` threads of a kernel using `regs_per_thread` is allocated.
inline int BlockRegisters(int threads, int regs_per_thread) {
  return (threads + 31) / 32 * ((regs_per_thread * 32 + 255) / 256 * 256);
}

}  // namespace deltaserve::cuda::gdn2_detail
