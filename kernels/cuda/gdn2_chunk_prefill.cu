// Chunked and token-serial GDN-2 prefill kernels (phase 1 versions 1-2, phase 2 version 1, and
// the dispatch to the versions in their own files); see gdn2_chunk_prefill.h for the contract,
// gdn2_chunk_phases.h for the workspace layout, and tools/gdn2_chunk_check.py for the float64
// derivation of the chunk form.
#include "kernels/cuda/gdn2_chunk_prefill.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/gdn2_chunk_phases.h"
#include "kernels/cuda/mma_tf32.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

using gdn2_chunk::ChunkSlot;
using gdn2_chunk::kC;
using gdn2_chunk::kDk;
using gdn2_chunk::kDv;
using gdn2_chunk::kOffA;
using gdn2_chunk::kOffKt;
using gdn2_chunk::kOffQg;
using gdn2_chunk::kOffU;
using gdn2_chunk::kOffY;
using gdn2_chunk::kWsRow;
constexpr int kThreads = 256;

// Phase 1 shared memory (floats): K, Q, G, BK [C][kP1Pad]; T, A [C][kTP] (kTP keeps rows
// 16-byte aligned for vector reads of T rows).
constexpr int kP1Pad = kDk + 1;
constexpr int kTP = kC + 4;
constexpr int kP1SmemFloats = 4 * kC * kP1Pad + 2 * kC * kTP;

// T (strictly lower) and Aqk (lower) of one chunk into ts / as ([C][kTP]), for 256 threads,
// by 4x4 tiles. Off-diagonal tiles (rows t0..t0+3 > columns j0..j0+3) use
// exp(G_t - G_j) = exp(G_t - G_t0) exp(G_t0 - G_j): both exponents are <= 0, so neither factor
// can overflow (an underflowed factor bounds the true product below it), and a tile needs 8 exps
// per channel instead of 16. Warps 0-3 hold the 120 off-diagonal tiles (one each), warp 4 the 16
// diagonal tiles (direct masked exponent, two lanes per tile, half the channels each), warps
// 5-7 zero the tiles above the diagonal. Every warp takes one branch, so none runs both.
__device__ __forceinline__ void Phase1TilesFactored(int tid, const float* qs, const float* ks,
                                                    const float* gs, const float* bs, float* ts,
                                                    float* as) {
  constexpr int kTiles = kC / 4;                          // 16 tiles per row
  constexpr int kOffDiag = kTiles * (kTiles - 1) / 2;     // 120
  if (tid < 128) {
    if (tid >= kOffDiag) return;
    int rt = 1;
    while ((rt + 1) * rt / 2 <= tid) ++rt;
    const int jt = tid - rt * (rt - 1) / 2;
    const int t0 = 4 * rt, j0 = 4 * jt;
    float tacc[4][4], aacc[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int e = 0; e < 4; ++e) tacc[a][e] = aacc[a][e] = 0.f;
    for (int ch = 0; ch < kDk; ++ch) {
      const float gr = gs[t0 * kP1Pad + ch];
      float qv[4], bv[4], kv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const float et = __expf(fminf(gs[(t0 + a) * kP1Pad + ch] - gr, 0.f));
        qv[a] = qs[(t0 + a) * kP1Pad + ch] * et;
        bv[a] = bs[(t0 + a) * kP1Pad + ch] * et;
        kv[a] = ks[(j0 + a) * kP1Pad + ch] * __expf(fminf(gr - gs[(j0 + a) * kP1Pad + ch], 0.f));
      }
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          tacc[a][e] = fmaf(bv[a], kv[e], tacc[a][e]);
          aacc[a][e] = fmaf(qv[a], kv[e], aacc[a][e]);
        }
    }
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        ts[(t0 + a) * kTP + j0 + e] = tacc[a][e];
        as[(t0 + a) * kTP + j0 + e] = aacc[a][e];
      }
  } else if (tid < 160) {
    const int lane = tid - 128;
    const int t0 = 4 * (lane % kTiles);
    const int ch0 = (lane / kTiles) * (kDk / 2);
    float tacc[4][4], aacc[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int e = 0; e < 4; ++e) tacc[a][e] = aacc[a][e] = 0.f;
    for (int ch = ch0; ch < ch0 + kDk / 2; ++ch) {
      float qv[4], bv[4], gt[4], kv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        qv[a] = qs[(t0 + a) * kP1Pad + ch];
        bv[a] = bs[(t0 + a) * kP1Pad + ch];
        gt[a] = gs[(t0 + a) * kP1Pad + ch];
        kv[a] = ks[(t0 + a) * kP1Pad + ch];
      }
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int e = 0; e <= a; ++e) {
          const float x = kv[e] * __expf(fminf(gt[a] - gt[e], 0.f));
          tacc[a][e] = fmaf(bv[a], x, tacc[a][e]);
          aacc[a][e] = fmaf(qv[a], x, aacc[a][e]);
        }
    }
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        tacc[a][e] += __shfl_xor_sync(0xffffffffu, tacc[a][e], kTiles);
        aacc[a][e] += __shfl_xor_sync(0xffffffffu, aacc[a][e], kTiles);
      }
    if (lane < kTiles) {
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          ts[(t0 + a) * kTP + t0 + e] = e < a ? tacc[a][e] : 0.f;
          as[(t0 + a) * kTP + t0 + e] = e <= a ? aacc[a][e] : 0.f;
        }
    }
  } else {
    for (int i = tid - 160; i < kC * kC; i += kThreads - 160) {
      const int t = i / kC, j = i % kC;
      if (j / 4 > t / 4) {
        ts[t * kTP + j] = 0.f;
        as[t * kTP + j] = 0.f;
      }
    }
  }
}

// Phase 1: one block per (chunk, sequence, value head). kFactored selects the factored T/Aqk
// tiles (Phase1TilesFactored) and vector reads of T rows in the forward substitution; false is
// the original per-element-exp version, kept for comparison.
template <bool kFactored>
__global__ void __launch_bounds__(kThreads) Gdn2ChunkPhase1Kernel(
    int heads_per_group, const int32_t* __restrict__ cu, const float* __restrict__ q,
    const float* __restrict__ k, const float* __restrict__ g, const float* __restrict__ b,
    const float* __restrict__ v, const float* __restrict__ w, int64_t q_stride, int64_t k_stride,
    int64_t g_stride, int64_t b_stride, int64_t v_stride, int64_t w_stride, int num_v_heads,
    float* __restrict__ ws, int64_t gamma_base) {
  extern __shared__ float smem[];
  float* ks = smem;
  float* qs = ks + kC * kP1Pad;
  float* gs = qs + kC * kP1Pad;
  float* bs = gs + kC * kP1Pad;
  float* ts = bs + kC * kP1Pad;
  float* as = ts + kC * kTP;

  const int c = blockIdx.x, s = blockIdx.y, hv = blockIdx.z;
  const int kh = hv / heads_per_group;
  const int64_t start = static_cast<int64_t>(cu[s]) + static_cast<int64_t>(c) * kC;
  const int64_t end = cu[s + 1];
  if (start >= end) return;
  const int len = static_cast<int>(min(static_cast<int64_t>(kC), end - start));
  const int tid = threadIdx.x;

  // Load the chunk (rows >= len are zero).
  for (int i = tid; i < kC * (kDk / 4); i += kThreads) {
    const int t = i / (kDk / 4), c4 = (i % (kDk / 4)) * 4;
    float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), qv = kv, gv = kv, bv = kv;
    if (t < len) {
      const int64_t tok = start + t;
      const int col = kh * kDk + c4;
      kv = *reinterpret_cast<const float4*>(k + tok * k_stride + col);
      qv = *reinterpret_cast<const float4*>(q + tok * q_stride + col);
      gv = *reinterpret_cast<const float4*>(g + tok * g_stride + col);
      bv = *reinterpret_cast<const float4*>(b + tok * b_stride + col);
    }
    float* kr = ks + t * kP1Pad + c4;
    float* qr = qs + t * kP1Pad + c4;
    float* gr = gs + t * kP1Pad + c4;
    float* br = bs + t * kP1Pad + c4;
    kr[0] = kv.x; kr[1] = kv.y; kr[2] = kv.z; kr[3] = kv.w;
    qr[0] = qv.x; qr[1] = qv.y; qr[2] = qv.z; qr[3] = qv.w;
    gr[0] = gv.x; gr[1] = gv.y; gr[2] = gv.z; gr[3] = gv.w;
    br[0] = bv.x * kv.x; br[1] = bv.y * kv.y; br[2] = bv.z * kv.z; br[3] = bv.w * kv.w;
  }
  __syncthreads();
  // Cumulative log-decay from the chunk start (padding rows repeat the last value).
  if (tid < kDk) {
    float acc = 0.f;
    for (int t = 0; t < kC; ++t) {
      acc += gs[t * kP1Pad + tid];
      gs[t * kP1Pad + tid] = acc;
    }
  }
  __syncthreads();

  if constexpr (kFactored) {
    Phase1TilesFactored(tid, qs, ks, gs, bs, ts, as);
  } else {
    // T (strictly lower) and Aqk (lower): 4x4 tiles, one per thread.
    {
      const int t0 = (tid / 16) * 4, j0 = (tid % 16) * 4;
      float tacc[4][4], aacc[4][4];
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int e = 0; e < 4; ++e) tacc[a][e] = aacc[a][e] = 0.f;
      if (j0 <= t0 + 3) {
        for (int ch = 0; ch < kDk; ++ch) {
          float qv[4], bv[4], gt[4], kv[4], gj[4];
#pragma unroll
          for (int a = 0; a < 4; ++a) {
            qv[a] = qs[(t0 + a) * kP1Pad + ch];
            bv[a] = bs[(t0 + a) * kP1Pad + ch];
            gt[a] = gs[(t0 + a) * kP1Pad + ch];
            kv[a] = ks[(j0 + a) * kP1Pad + ch];
            gj[a] = gs[(j0 + a) * kP1Pad + ch];
          }
#pragma unroll
          for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              // exp of a non-positive number only; masked above the diagonal.
              const float d = (j0 + e <= t0 + a) ? gt[a] - gj[e] : -INFINITY;
              const float x = kv[e] * __expf(fminf(d, 0.f));
              tacc[a][e] = fmaf(bv[a], x, tacc[a][e]);
              aacc[a][e] = fmaf(qv[a], x, aacc[a][e]);
            }
        }
      }
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int t = t0 + a, j = j0 + e;
          ts[t * kTP + j] = (j < t) ? tacc[a][e] : 0.f;
          as[t * kTP + j] = (j <= t) ? aacc[a][e] : 0.f;
        }
    }
  }
  __syncthreads();

  // Qg, Ktail, Aqk rows and gamma to the workspace; E = exp(G) b k in place of BK.
  const int64_t row0 = start * num_v_heads + hv;
  for (int i = tid; i < len * kDk; i += kThreads) {
    const int t = i / kDk, ch = i % kDk;
    const float gt = gs[t * kP1Pad + ch];
    const float glast = gs[(len - 1) * kP1Pad + ch];
    float* row = ws + (row0 + static_cast<int64_t>(t) * num_v_heads) * kWsRow;
    const float et = __expf(gt);
    row[kOffQg + ch] = qs[t * kP1Pad + ch] * et;
    row[kOffKt + ch] = ks[t * kP1Pad + ch] * __expf(glast - gt);
    bs[t * kP1Pad + ch] *= et;
  }
  for (int i = tid; i < len * kC; i += kThreads) {
    const int t = i / kC, j = i % kC;
    ws[(row0 + static_cast<int64_t>(t) * num_v_heads) * kWsRow + kOffA + j] = as[t * kTP + j];
  }
  if (tid < kDk) {
    ws[gamma_base + (ChunkSlot(cu, s, c) * num_v_heads + hv) * kDk + tid] =
        __expf(gs[(len - 1) * kP1Pad + tid]);
  }
  __syncthreads();
  // Z = w v into the Q area (dv <= kP1Pad).
  for (int i = tid; i < kC * kDv; i += kThreads) {
    const int t = i / kDv, n = i % kDv;
    float z = 0.f;
    if (t < len) {
      const int64_t tok = start + t;
      z = w[tok * w_stride + hv * kDv + n] * v[tok * v_stride + hv * kDv + n];
    }
    qs[t * kP1Pad + n] = z;
  }
  __syncthreads();

  // Forward substitution (I + T) X = RHS, one column per thread: columns 0..dk-1 of E, then
  // columns of Z. A thread only reads rows of its own column, so no barrier is needed.
  {
    float* x = tid < kDk ? bs : qs;
    const int col = tid < kDk ? tid : tid - kDk;
    for (int t = 1; t < len; ++t) {
      const float* trow = ts + t * kTP;
      float a0 = x[t * kP1Pad + col], a1 = 0.f, a2 = 0.f, a3 = 0.f;
      int j = 0;
      if constexpr (kFactored) {
        for (; j + 4 <= t; j += 4) {
          const float4 tr = *reinterpret_cast<const float4*>(trow + j);
          a0 = fmaf(-tr.x, x[j * kP1Pad + col], a0);
          a1 = fmaf(-tr.y, x[(j + 1) * kP1Pad + col], a1);
          a2 = fmaf(-tr.z, x[(j + 2) * kP1Pad + col], a2);
          a3 = fmaf(-tr.w, x[(j + 3) * kP1Pad + col], a3);
        }
      }
      for (; j + 4 <= t; j += 4) {
        a0 = fmaf(-trow[j], x[j * kP1Pad + col], a0);
        a1 = fmaf(-trow[j + 1], x[(j + 1) * kP1Pad + col], a1);
        a2 = fmaf(-trow[j + 2], x[(j + 2) * kP1Pad + col], a2);
        a3 = fmaf(-trow[j + 3], x[(j + 3) * kP1Pad + col], a3);
      }
      for (; j < t; ++j) a0 = fmaf(-trow[j], x[j * kP1Pad + col], a0);
      x[t * kP1Pad + col] = (a0 + a1) + (a2 + a3);
    }
  }
  __syncthreads();
  for (int i = tid; i < len * kDk; i += kThreads) {
    const int t = i / kDk, ch = i % kDk;
    float* row = ws + (row0 + static_cast<int64_t>(t) * num_v_heads) * kWsRow;
    row[kOffY + ch] = bs[t * kP1Pad + ch];
    row[kOffU + ch] = qs[t * kP1Pad + ch];
  }
}

// Phase 2 shared memory (floats) for DVB state columns per block.
constexpr int kP2Pad = kDk + 4;
template <int DVB>
constexpr int P2SmemFloats() {
  return 3 * kC * kP2Pad + kC * (kC + 4) + 2 * kC * (DVB + 4) + kDk * (DVB + 4) + kDk;
}

// Phase 2: one block per (column block, value head, sequence); sequential over chunks.
template <int DVB>
__global__ void __launch_bounds__(kThreads) Gdn2ChunkPhase2Kernel(
    const int32_t* __restrict__ cu, const int32_t* __restrict__ slots, char* __restrict__ pool,
    int64_t slot_stride, int64_t recurrent_offset, int num_v_heads,
    const float* __restrict__ ws, int64_t gamma_base, float* __restrict__ o, int64_t o_stride) {
  constexpr int kSP = DVB + 4;
  constexpr int kP = DVB / 4;   // outputs per thread in steps a/b (row t = tid / 4)
  constexpr int kPs = DVB / 2;  // state entries per thread in step c (row = tid / 2)
  extern __shared__ float smem[];
  float* ys = smem;
  float* qgs = ys + kC * kP2Pad;
  float* kts = qgs + kC * kP2Pad;
  float* as = kts + kC * kP2Pad;
  float* us = as + kC * (kC + 4);
  float* vs = us + kC * kSP;
  float* ss = vs + kC * kSP;
  float* gam = ss + kDk * kSP;

  const int split = blockIdx.x, hv = blockIdx.y, s = blockIdx.z;
  const int n0 = split * DVB;
  const int tid = threadIdx.x;
  const int64_t seq_start = cu[s], seq_end = cu[s + 1];
  float* state = reinterpret_cast<float*>(pool + static_cast<int64_t>(slots[s]) * slot_stride +
                                          recurrent_offset) +
                 static_cast<int64_t>(hv) * kDk * kDv;

  for (int i = tid; i < kDk * (DVB / 4); i += kThreads) {
    const int r = i / (DVB / 4), c4 = (i % (DVB / 4)) * 4;
    *reinterpret_cast<float4*>(ss + r * kSP + c4) =
        *reinterpret_cast<const float4*>(state + r * kDv + n0 + c4);
  }

  const int ta = tid / 4, na = (tid % 4) * kP;
  const int rc = tid / 2, nc = (tid % 2) * kPs;
  const int nchunks = static_cast<int>((seq_end - seq_start + kC - 1) / kC);
  for (int c = 0; c < nchunks; ++c) {
    const int64_t start = seq_start + static_cast<int64_t>(c) * kC;
    const int len = static_cast<int>(min(static_cast<int64_t>(kC), seq_end - start));
    __syncthreads();  // previous chunk's readers are done with the tiles and S
    const float* ws0 = ws + (start * num_v_heads + hv) * kWsRow;
    const int64_t ws_tok = static_cast<int64_t>(num_v_heads) * kWsRow;
    for (int i = tid; i < len * (kDk / 4); i += kThreads) {
      const int t = i / (kDk / 4), c4 = (i % (kDk / 4)) * 4;
      const float* row = ws0 + t * ws_tok;
      *reinterpret_cast<float4*>(ys + t * kP2Pad + c4) =
          *reinterpret_cast<const float4*>(row + kOffY + c4);
      *reinterpret_cast<float4*>(qgs + t * kP2Pad + c4) =
          *reinterpret_cast<const float4*>(row + kOffQg + c4);
      *reinterpret_cast<float4*>(kts + t * kP2Pad + c4) =
          *reinterpret_cast<const float4*>(row + kOffKt + c4);
    }
    for (int i = tid; i < len * (kC / 4); i += kThreads) {
      const int t = i / (kC / 4), c4 = (i % (kC / 4)) * 4;
      *reinterpret_cast<float4*>(as + t * (kC + 4) + c4) =
          *reinterpret_cast<const float4*>(ws0 + t * ws_tok + kOffA + c4);
    }
    for (int i = tid; i < len * (DVB / 4); i += kThreads) {
      const int t = i / (DVB / 4), c4 = (i % (DVB / 4)) * 4;
      *reinterpret_cast<float4*>(us + t * kSP + c4) =
          *reinterpret_cast<const float4*>(ws0 + t * ws_tok + kOffU + n0 + c4);
    }
    if (tid < kDk)
      gam[tid] = ws[gamma_base + (ChunkSlot(cu, s, c) * num_v_heads + hv) * kDk + tid];
    __syncthreads();

    // Step a: U = U' - Y S and the first output term Qg S.
    float acc_o[kP];
    if (ta < len) {
      float acc_u[kP];
#pragma unroll
      for (int p = 0; p < kP; ++p) {
        acc_u[p] = us[ta * kSP + na + p];
        acc_o[p] = 0.f;
      }
      for (int ch = 0; ch < kDk; ++ch) {
        const float y = ys[ta * kP2Pad + ch];
        const float qg = qgs[ta * kP2Pad + ch];
#pragma unroll
        for (int p = 0; p < kP; p += 4) {
          const float4 sv = *reinterpret_cast<const float4*>(ss + ch * kSP + na + p);
          acc_u[p] = fmaf(-y, sv.x, acc_u[p]);
          acc_u[p + 1] = fmaf(-y, sv.y, acc_u[p + 1]);
          acc_u[p + 2] = fmaf(-y, sv.z, acc_u[p + 2]);
          acc_u[p + 3] = fmaf(-y, sv.w, acc_u[p + 3]);
          acc_o[p] = fmaf(qg, sv.x, acc_o[p]);
          acc_o[p + 1] = fmaf(qg, sv.y, acc_o[p + 1]);
          acc_o[p + 2] = fmaf(qg, sv.z, acc_o[p + 2]);
          acc_o[p + 3] = fmaf(qg, sv.w, acc_o[p + 3]);
        }
      }
#pragma unroll
      for (int p = 0; p < kP; ++p) vs[ta * kSP + na + p] = acc_u[p];
    }
    __syncthreads();

    // Step b: O += Aqk U (rows j <= t).
    if (ta < len) {
      for (int j = 0; j <= ta; ++j) {
        const float a = as[ta * (kC + 4) + j];
#pragma unroll
        for (int p = 0; p < kP; p += 4) {
          const float4 uv = *reinterpret_cast<const float4*>(vs + j * kSP + na + p);
          acc_o[p] = fmaf(a, uv.x, acc_o[p]);
          acc_o[p + 1] = fmaf(a, uv.y, acc_o[p + 1]);
          acc_o[p + 2] = fmaf(a, uv.z, acc_o[p + 2]);
          acc_o[p + 3] = fmaf(a, uv.w, acc_o[p + 3]);
        }
      }
      float* orow = o + (start + ta) * o_stride + static_cast<int64_t>(hv) * kDv + n0 + na;
#pragma unroll
      for (int p = 0; p < kP; p += 4)
        *reinterpret_cast<float4*>(orow + p) =
            make_float4(acc_o[p], acc_o[p + 1], acc_o[p + 2], acc_o[p + 3]);
    }

    // Step c: S = diag(gamma) S + Ktail^T U (this thread's row rc, columns nc..nc+kPs).
    {
      float acc_s[kPs];
      const float gmm = gam[rc];
#pragma unroll
      for (int p = 0; p < kPs; ++p) acc_s[p] = ss[rc * kSP + nc + p] * gmm;
      for (int j = 0; j < len; ++j) {
        const float kt = kts[j * kP2Pad + rc];
#pragma unroll
        for (int p = 0; p < kPs; p += 4) {
          const float4 uv = *reinterpret_cast<const float4*>(vs + j * kSP + nc + p);
          acc_s[p] = fmaf(kt, uv.x, acc_s[p]);
          acc_s[p + 1] = fmaf(kt, uv.y, acc_s[p + 1]);
          acc_s[p + 2] = fmaf(kt, uv.z, acc_s[p + 2]);
          acc_s[p + 3] = fmaf(kt, uv.w, acc_s[p + 3]);
        }
      }
      // Step a of this chunk read S before the barrier above; only this thread touches these
      // entries until the next barrier.
#pragma unroll
      for (int p = 0; p < kPs; ++p) ss[rc * kSP + nc + p] = acc_s[p];
    }
  }
  __syncthreads();
  for (int i = tid; i < kDk * (DVB / 4); i += kThreads) {
    const int r = i / (DVB / 4), c4 = (i % (DVB / 4)) * 4;
    *reinterpret_cast<float4*>(state + r * kDv + n0 + c4) =
        *reinterpret_cast<const float4*>(ss + r * kSP + c4);
  }
}

// --- Phase 2 on the tensor cores: mma.sync m16n8k8 in tf32 with the 3xTF32 split
// (kernels/cuda/mma_tf32.cuh: fragment layouts, fp32-level products, fp32 accumulation).
using mma::Mma3xTf32;
using mma::SplitA;

template <int DVB>
constexpr int P2MmaSmemFloats() {
  return 3 * kC * kP2Pad + kC * (kC + 4) + 2 * kC * (DVB + 8) + kDk * (DVB + 8) + kDk;
}

// Phase 2, tensor-core version: same contract and grid as Gdn2ChunkPhase2Kernel. Warp w owns
// token tile w % 4 and column tiles w / 4 + 2i of U and O, and state rows 16w..16w+15 (all
// DVB columns) in registers.
template <int DVB>
__global__ void __launch_bounds__(kThreads) Gdn2ChunkPhase2MmaKernel(
    const int32_t* __restrict__ cu, const int32_t* __restrict__ slots, char* __restrict__ pool,
    int64_t slot_stride, int64_t recurrent_offset, int num_v_heads,
    const float* __restrict__ ws, int64_t gamma_base, float* __restrict__ o, int64_t o_stride) {
  constexpr int kSP = DVB + 8;   // conflict-free B-fragment reads
  constexpr int kNA = DVB / 16;  // column tiles per warp for U and O
  constexpr int kNS = DVB / 8;   // column tiles per warp for S
  extern __shared__ float smem[];
  float* ys = smem;
  float* qgs = ys + kC * kP2Pad;
  float* kts = qgs + kC * kP2Pad;
  float* as = kts + kC * kP2Pad;
  float* us = as + kC * (kC + 4);
  float* vs = us + kC * kSP;
  float* ss = vs + kC * kSP;
  float* gam = ss + kDk * kSP;

  const int split = blockIdx.x, hv = blockIdx.y, s = blockIdx.z;
  const int n0 = split * DVB;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int64_t seq_start = cu[s], seq_end = cu[s + 1];
  float* state = reinterpret_cast<float*>(pool + static_cast<int64_t>(slots[s]) * slot_stride +
                                          recurrent_offset) +
                 static_cast<int64_t>(hv) * kDk * kDv;

  // State rows of this warp in C-fragment layout: sacc[nt] covers rows 16w+g (+8), columns
  // 8nt + 2t (+1).
  float sacc[kNS][4];
  const int sr0 = 16 * warp + g;
#pragma unroll
  for (int nt = 0; nt < kNS; ++nt) {
    const int col = n0 + 8 * nt + 2 * t4;
    sacc[nt][0] = state[sr0 * kDv + col];
    sacc[nt][1] = state[sr0 * kDv + col + 1];
    sacc[nt][2] = state[(sr0 + 8) * kDv + col];
    sacc[nt][3] = state[(sr0 + 8) * kDv + col + 1];
    ss[sr0 * kSP + 8 * nt + 2 * t4] = sacc[nt][0];
    ss[sr0 * kSP + 8 * nt + 2 * t4 + 1] = sacc[nt][1];
    ss[(sr0 + 8) * kSP + 8 * nt + 2 * t4] = sacc[nt][2];
    ss[(sr0 + 8) * kSP + 8 * nt + 2 * t4 + 1] = sacc[nt][3];
  }

  const int mt = warp & 3;  // token tile of U and O
  const int row0 = 16 * mt + g;
  const int nchunks = static_cast<int>((seq_end - seq_start + kC - 1) / kC);
  for (int c = 0; c < nchunks; ++c) {
    const int64_t start = seq_start + static_cast<int64_t>(c) * kC;
    const int len = static_cast<int>(min(static_cast<int64_t>(kC), seq_end - start));
    __syncthreads();  // previous chunk's readers are done with the tiles, U and S copies
    const float* ws0 = ws + (start * num_v_heads + hv) * kWsRow;
    const int64_t ws_tok = static_cast<int64_t>(num_v_heads) * kWsRow;
    const float4 zero4 = make_float4(0.f, 0.f, 0.f, 0.f);
    // Rows >= len are zero so that padded tokens contribute nothing.
    for (int i = tid; i < kC * (kDk / 4); i += kThreads) {
      const int t = i / (kDk / 4), c4 = (i % (kDk / 4)) * 4;
      const float* row = ws0 + t * ws_tok;
      const bool in = t < len;
      *reinterpret_cast<float4*>(ys + t * kP2Pad + c4) =
          in ? *reinterpret_cast<const float4*>(row + kOffY + c4) : zero4;
      *reinterpret_cast<float4*>(qgs + t * kP2Pad + c4) =
          in ? *reinterpret_cast<const float4*>(row + kOffQg + c4) : zero4;
      *reinterpret_cast<float4*>(kts + t * kP2Pad + c4) =
          in ? *reinterpret_cast<const float4*>(row + kOffKt + c4) : zero4;
    }
    for (int i = tid; i < kC * (kC / 4); i += kThreads) {
      const int t = i / (kC / 4), c4 = (i % (kC / 4)) * 4;
      *reinterpret_cast<float4*>(as + t * (kC + 4) + c4) =
          t < len ? *reinterpret_cast<const float4*>(ws0 + t * ws_tok + kOffA + c4) : zero4;
    }
    for (int i = tid; i < kC * (DVB / 4); i += kThreads) {
      const int t = i / (DVB / 4), c4 = (i % (DVB / 4)) * 4;
      *reinterpret_cast<float4*>(us + t * kSP + c4) =
          t < len ? *reinterpret_cast<const float4*>(ws0 + t * ws_tok + kOffU + n0 + c4) : zero4;
    }
    if (tid < kDk)
      gam[tid] = ws[gamma_base + (ChunkSlot(cu, s, c) * num_v_heads + hv) * kDk + tid];
    __syncthreads();

    // Step a: U = U' - Y S, O = Qg S.
    float uacc[kNA][4], oacc[kNA][4];
#pragma unroll
    for (int i = 0; i < kNA; ++i) {
      const int col = 8 * ((warp >> 2) + 2 * i) + 2 * t4;
      uacc[i][0] = us[row0 * kSP + col];
      uacc[i][1] = us[row0 * kSP + col + 1];
      uacc[i][2] = us[(row0 + 8) * kSP + col];
      uacc[i][3] = us[(row0 + 8) * kSP + col + 1];
      oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
    }
#pragma unroll 4
    for (int ks = 0; ks < kDk / 8; ++ks) {
      const int k0 = 8 * ks;
      float ay[4], aq[4];
      ay[0] = -ys[row0 * kP2Pad + k0 + t4];
      ay[1] = -ys[(row0 + 8) * kP2Pad + k0 + t4];
      ay[2] = -ys[row0 * kP2Pad + k0 + t4 + 4];
      ay[3] = -ys[(row0 + 8) * kP2Pad + k0 + t4 + 4];
      aq[0] = qgs[row0 * kP2Pad + k0 + t4];
      aq[1] = qgs[(row0 + 8) * kP2Pad + k0 + t4];
      aq[2] = qgs[row0 * kP2Pad + k0 + t4 + 4];
      aq[3] = qgs[(row0 + 8) * kP2Pad + k0 + t4 + 4];
      const SplitA sy(ay), sq(aq);
#pragma unroll
      for (int i = 0; i < kNA; ++i) {
        const int ncol = 8 * ((warp >> 2) + 2 * i) + g;
        const float b0 = ss[(k0 + t4) * kSP + ncol];
        const float b1 = ss[(k0 + t4 + 4) * kSP + ncol];
        Mma3xTf32(uacc[i], sy, b0, b1);
        Mma3xTf32(oacc[i], sq, b0, b1);
      }
    }
#pragma unroll
    for (int i = 0; i < kNA; ++i) {
      const int col = 8 * ((warp >> 2) + 2 * i) + 2 * t4;
      vs[row0 * kSP + col] = uacc[i][0];
      vs[row0 * kSP + col + 1] = uacc[i][1];
      vs[(row0 + 8) * kSP + col] = uacc[i][2];
      vs[(row0 + 8) * kSP + col + 1] = uacc[i][3];
    }
    __syncthreads();

    // Step b: O += Aqk U (Aqk is lower triangular: k-steps past the tile's diagonal are zero).
    for (int ks = 0; ks < 2 * mt + 2; ++ks) {
      const int k0 = 8 * ks;
      float aa[4];
      aa[0] = as[row0 * (kC + 4) + k0 + t4];
      aa[1] = as[(row0 + 8) * (kC + 4) + k0 + t4];
      aa[2] = as[row0 * (kC + 4) + k0 + t4 + 4];
      aa[3] = as[(row0 + 8) * (kC + 4) + k0 + t4 + 4];
      const SplitA sa(aa);
#pragma unroll
      for (int i = 0; i < kNA; ++i) {
        const int ncol = 8 * ((warp >> 2) + 2 * i) + g;
        Mma3xTf32(oacc[i], sa, vs[(k0 + t4) * kSP + ncol], vs[(k0 + t4 + 4) * kSP + ncol]);
      }
    }
#pragma unroll
    for (int i = 0; i < kNA; ++i) {
      const int col = n0 + 8 * ((warp >> 2) + 2 * i) + 2 * t4;
      float* base = o + static_cast<int64_t>(hv) * kDv + col;
      if (row0 < len)
        *reinterpret_cast<float2*>(base + (start + row0) * o_stride) =
            make_float2(oacc[i][0], oacc[i][1]);
      if (row0 + 8 < len)
        *reinterpret_cast<float2*>(base + (start + row0 + 8) * o_stride) =
            make_float2(oacc[i][2], oacc[i][3]);
    }

    // Step c: S = diag(gamma) S + Ktail^T U for this warp's state rows; A[m][k] = Ktail[k][m].
    {
      const float g0 = gam[sr0], g1 = gam[sr0 + 8];
#pragma unroll
      for (int nt = 0; nt < kNS; ++nt) {
        sacc[nt][0] *= g0;
        sacc[nt][1] *= g0;
        sacc[nt][2] *= g1;
        sacc[nt][3] *= g1;
      }
      const int ksteps = (len + 7) / 8;
      for (int ks = 0; ks < ksteps; ++ks) {
        const int k0 = 8 * ks;
        float ak[4];
        ak[0] = kts[(k0 + t4) * kP2Pad + sr0];
        ak[1] = kts[(k0 + t4) * kP2Pad + sr0 + 8];
        ak[2] = kts[(k0 + t4 + 4) * kP2Pad + sr0];
        ak[3] = kts[(k0 + t4 + 4) * kP2Pad + sr0 + 8];
        const SplitA sk(ak);
#pragma unroll
        for (int nt = 0; nt < kNS; ++nt)
          Mma3xTf32(sacc[nt], sk, vs[(k0 + t4) * kSP + 8 * nt + g],
                    vs[(k0 + t4 + 4) * kSP + 8 * nt + g]);
      }
      // Step a of this chunk read the S copy before the barrier above.
#pragma unroll
      for (int nt = 0; nt < kNS; ++nt) {
        ss[sr0 * kSP + 8 * nt + 2 * t4] = sacc[nt][0];
        ss[sr0 * kSP + 8 * nt + 2 * t4 + 1] = sacc[nt][1];
        ss[(sr0 + 8) * kSP + 8 * nt + 2 * t4] = sacc[nt][2];
        ss[(sr0 + 8) * kSP + 8 * nt + 2 * t4 + 1] = sacc[nt][3];
      }
    }
  }
#pragma unroll
  for (int nt = 0; nt < kNS; ++nt) {
    const int col = n0 + 8 * nt + 2 * t4;
    *reinterpret_cast<float2*>(state + sr0 * kDv + col) = make_float2(sacc[nt][0], sacc[nt][1]);
    *reinterpret_cast<float2*>(state + (sr0 + 8) * kDv + col) =
        make_float2(sacc[nt][2], sacc[nt][3]);
  }
}

// Token-serial recurrence: one block per (column block of 32, value head, sequence); thread r
// owns row r of the state block in registers.
constexpr int kSerialCols = 32;
__global__ void __launch_bounds__(kDk) Gdn2SerialKernel(
    int heads_per_group, const int32_t* __restrict__ cu, const int32_t* __restrict__ slots,
    char* __restrict__ pool, int64_t slot_stride, int64_t recurrent_offset,
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ g,
    const float* __restrict__ b, const float* __restrict__ v, const float* __restrict__ w,
    int64_t q_stride, int64_t k_stride, int64_t g_stride, int64_t b_stride, int64_t v_stride,
    int64_t w_stride, float* __restrict__ o, int64_t o_stride) {
  constexpr int kN = kSerialCols;
  constexpr int kVals = 2 * kN + 1;
  __shared__ float red[kDk / 32][kVals];
  __shared__ float wv[kN];
  const int split = blockIdx.x, hv = blockIdx.y, s = blockIdx.z;
  const int kh = hv / heads_per_group;
  const int n0 = split * kN;
  const int r = threadIdx.x, lane = r % 32, warp = r / 32;
  float* state = reinterpret_cast<float*>(pool + static_cast<int64_t>(slots[s]) * slot_stride +
                                          recurrent_offset) +
                 static_cast<int64_t>(hv) * kDk * kDv + static_cast<int64_t>(r) * kDv + n0;
  float sr[kN];
#pragma unroll
  for (int n = 0; n < kN; ++n) sr[n] = state[n];
  for (int64_t tok = cu[s]; tok < cu[s + 1]; ++tok) {
    const int col = kh * kDk + r;
    const float kc = k[tok * k_stride + col];
    const float qc = q[tok * q_stride + col];
    const float alpha = expf(g[tok * g_stride + col]);
    const float bk = b[tok * b_stride + col] * kc;
    if (r < kN) {
      const int64_t vc = static_cast<int64_t>(hv) * kDv + n0 + r;
      wv[r] = w[tok * w_stride + vc] * v[tok * v_stride + vc];
    }
    float part[kVals];
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      sr[n] *= alpha;
      part[n] = sr[n] * bk;
      part[kN + n] = sr[n] * qc;
    }
    part[2 * kN] = kc * qc;
#pragma unroll
    for (int i = 0; i < kVals; ++i) {
#pragma unroll
      for (int off = 16; off > 0; off /= 2) part[i] += __shfl_xor_sync(0xffffffffu, part[i], off);
    }
    if (lane == 0) {
#pragma unroll
      for (int i = 0; i < kVals; ++i) red[warp][i] = part[i];
    }
    __syncthreads();
    float kq = 0.f;
#pragma unroll
    for (int wi = 0; wi < kDk / 32; ++wi) kq += red[wi][2 * kN];
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      float rn = 0.f, on = 0.f;
#pragma unroll
      for (int wi = 0; wi < kDk / 32; ++wi) {
        rn += red[wi][n];
        on += red[wi][kN + n];
      }
      const float u = wv[n] - rn;
      sr[n] = fmaf(kc, u, sr[n]);
      if (r == n) o[tok * o_stride + static_cast<int64_t>(hv) * kDv + n0 + n] = fmaf(kq, u, on);
    }
    __syncthreads();
  }
#pragma unroll
  for (int n = 0; n < kN; ++n) state[n] = sr[n];
}

absl::Status CheckArgs(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a) {
  auto bad = [](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("gdn2 prefill: ", what));
  };
  if (shape.head_k_dim != kDk || shape.head_v_dim != kDv)
    return bad("head_k_dim and head_v_dim must be 128");
  if (shape.num_heads <= 0 || shape.num_v_heads <= 0 || shape.num_v_heads % shape.num_heads != 0)
    return bad("num_v_heads must be a positive multiple of num_heads");
  if (a.state_type != DType::kF32) return bad("state_type must be f32");
  if (a.num_seqs < 0 || a.max_seq_len < 0 || a.total_tokens < 0)
    return bad("num_seqs, max_seq_len and total_tokens must be >= 0");
  if (a.num_seqs > 65535) return bad("num_seqs must be <= 65535");
  if (a.num_seqs == 0 || a.total_tokens == 0) return absl::OkStatus();
  if (a.cu_seqlens == nullptr || a.slots == nullptr || a.pool == nullptr)
    return bad("cu_seqlens, slots and pool must be set");
  if (a.q == nullptr || a.k == nullptr || a.g == nullptr || a.b == nullptr || a.v == nullptr ||
      a.w == nullptr || a.o == nullptr)
    return bad("q, k, g, b, v, w and o must be set");
  const int64_t kd = shape.key_dim(), vd = shape.value_dim();
  if (a.q_stride < kd || a.k_stride < kd || a.g_stride < kd || a.b_stride < kd)
    return bad("q/k/g/b row strides must be >= key_dim");
  if (a.v_stride < vd || a.w_stride < vd || a.o_stride < vd)
    return bad("v/w/o row strides must be >= value_dim");
  if ((a.q_stride | a.k_stride | a.g_stride | a.b_stride | a.v_stride | a.w_stride | a.o_stride) %
          4 != 0)
    return bad("row strides must be multiples of 4");
  for (const void* p : {static_cast<const void*>(a.q), static_cast<const void*>(a.k),
                        static_cast<const void*>(a.g), static_cast<const void*>(a.b),
                        static_cast<const void*>(a.v), static_cast<const void*>(a.w),
                        static_cast<const void*>(a.o)})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return bad("q/k/g/b/v/w/o must be 16-byte aligned");
  const int64_t state_bytes = static_cast<int64_t>(shape.num_v_heads) * kDk * kDv * 4;
  if (a.num_slots <= 0 || a.recurrent_offset < 0 || a.recurrent_offset % 16 != 0 ||
      a.slot_stride_bytes % 16 != 0 || a.recurrent_offset + state_bytes > a.slot_stride_bytes)
    return bad("recurrent_offset must be 16-byte aligned and the state must fit in slot_stride_bytes");
  if (reinterpret_cast<uintptr_t>(a.pool) % 16 != 0) return bad("pool must be 16-byte aligned");
  if (a.max_seq_len <= 0) return bad("max_seq_len must be > 0");
  return absl::OkStatus();
}

int NumSms() {
  static const int sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      return 132;
    return n;
  }();
  return sms;
}

template <int DVB>
absl::Status LaunchPhase2(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                          int64_t gamma_base, int splits, cudaStream_t stream) {
  const dim3 grid(splits, shape.num_v_heads, a.num_seqs);
  if (a.tensor_cores) {
    const int smem = P2MmaSmemFloats<DVB>() * 4;
    DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        Gdn2ChunkPhase2MmaKernel<DVB>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    Gdn2ChunkPhase2MmaKernel<DVB><<<grid, kThreads, smem, stream>>>(
        a.cu_seqlens, a.slots, static_cast<char*>(a.pool), a.slot_stride_bytes,
        a.recurrent_offset, shape.num_v_heads, a.workspace, gamma_base, a.o, a.o_stride);
    return LaunchStatus("Gdn2ChunkPhase2MmaKernel");
  }
  const int smem = P2SmemFloats<DVB>() * 4;
  DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      Gdn2ChunkPhase2Kernel<DVB>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  Gdn2ChunkPhase2Kernel<DVB><<<grid, kThreads, smem, stream>>>(
      a.cu_seqlens, a.slots, static_cast<char*>(a.pool), a.slot_stride_bytes, a.recurrent_offset,
      shape.num_v_heads, a.workspace, gamma_base, a.o, a.o_stride);
  return LaunchStatus("Gdn2ChunkPhase2Kernel");
}

}  // namespace

int64_t Gdn2ChunkWorkspaceFloats(const Gdn2PrefillShape& shape, int64_t total_tokens,
                                 int num_seqs) {
  return gdn2_chunk::ExtraBase(total_tokens, num_seqs, shape.num_v_heads) +
         gdn2_chunk::Phase2V2ExtraFloats(shape, total_tokens, num_seqs);
}

absl::Status LaunchGdn2ChunkPrefill(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                                    cudaStream_t stream) {
  if (a.phase1_version < 1 || a.phase1_version > 3)
    return absl::InvalidArgumentError("gdn2 prefill: phase1_version must be 1, 2 or 3");
  if (a.phase2_version != 1 && a.phase2_version != 2)
    return absl::InvalidArgumentError("gdn2 prefill: phase2_version must be 1 or 2");
  if (absl::Status st = CheckArgs(shape, a); !st.ok()) return st;
  if (a.num_seqs == 0 || a.total_tokens == 0) return absl::OkStatus();
  const int64_t need = Gdn2ChunkWorkspaceFloats(shape, a.total_tokens, a.num_seqs);
  if (a.workspace == nullptr || a.workspace_floats < need)
    return absl::InvalidArgumentError(
        absl::StrCat("gdn2 prefill: workspace needs ", need, " floats, got ", a.workspace_floats));
  int splits = a.splits;
  if (splits == 0) {
    const int64_t base = static_cast<int64_t>(shape.num_v_heads) * a.num_seqs;
    splits = base * 2 >= NumSms() ? 2 : base * 4 >= NumSms() ? 4 : 8;
  }
  if (splits != 2 && splits != 4 && splits != 8)
    return absl::InvalidArgumentError("gdn2 prefill: splits must be 0, 2, 4 or 8");

  if (a.phase_mask < 1 || a.phase_mask > 3)
    return absl::InvalidArgumentError("gdn2 prefill: phase_mask must be 1, 2 or 3");
  const int64_t gamma_base = gdn2_chunk::GammaBase(a.total_tokens, shape.num_v_heads);
  if ((a.phase_mask & 1) && a.phase1_version == 3) {
    if (absl::Status st = gdn2_chunk::LaunchPhase1V3(shape, a, stream); !st.ok()) return st;
  } else if (a.phase_mask & 1) {
    const int max_chunks = (a.max_seq_len + kC - 1) / kC;
    const int smem1 = kP1SmemFloats * 4;
    auto* kernel = a.phase1_version == 1 ? Gdn2ChunkPhase1Kernel<false>
                                         : Gdn2ChunkPhase1Kernel<true>;
    DS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem1));
    kernel<<<dim3(max_chunks, a.num_seqs, shape.num_v_heads), kThreads, smem1, stream>>>(
        shape.num_v_heads / shape.num_heads, a.cu_seqlens, a.q, a.k, a.g, a.b, a.v, a.w,
        a.q_stride, a.k_stride, a.g_stride, a.b_stride, a.v_stride, a.w_stride, shape.num_v_heads,
        a.workspace, gamma_base);
    if (absl::Status st = LaunchStatus("Gdn2ChunkPhase1Kernel"); !st.ok()) return st;
  }
  if (!(a.phase_mask & 2)) return absl::OkStatus();
  if (a.phase2_version == 2) return gdn2_chunk::LaunchPhase2V2(shape, a, stream);
  switch (splits) {
    case 2: return LaunchPhase2<64>(shape, a, gamma_base, 2, stream);
    case 4: return LaunchPhase2<32>(shape, a, gamma_base, 4, stream);
    default: return LaunchPhase2<16>(shape, a, gamma_base, 8, stream);
  }
}

absl::Status LaunchGdn2SerialPrefill(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                                     cudaStream_t stream) {
  if (absl::Status st = CheckArgs(shape, a); !st.ok()) return st;
  if (a.num_seqs == 0 || a.total_tokens == 0) return absl::OkStatus();
  Gdn2SerialKernel<<<dim3(kDv / kSerialCols, shape.num_v_heads, a.num_seqs), kDk, 0, stream>>>(
      shape.num_v_heads / shape.num_heads, a.cu_seqlens, a.slots, static_cast<char*>(a.pool),
      a.slot_stride_bytes, a.recurrent_offset, a.q, a.k, a.g, a.b, a.v, a.w, a.q_stride,
      a.k_stride, a.g_stride, a.b_stride, a.v_stride, a.w_stride, a.o, a.o_stride);
  return LaunchStatus("Gdn2SerialKernel");
}

double Gdn2ChunkPrefillFlops(const Gdn2PrefillShape& shape, int64_t len) {
  const double dk = shape.head_k_dim, dv = shape.head_v_dim;
  double total = 0;
  for (int64_t c0 = 0; c0 < len; c0 += kC) {
    const double l = static_cast<double>(std::min<int64_t>(kC, len - c0));
    const double tri = l * (l + 1) / 2;
    total += 2 * tri * dk * 2;         // T and Aqk
    total += 2 * tri * (dk + dv);      // forward substitution for Y and U'
    total += 3 * 2 * l * dk * dv;      // Y S, Qg S, Ktail^T U
    total += 2 * tri * dv;             // Aqk U
  }
  return total * shape.num_v_heads;
}

}  // namespace deltaserve::cuda
