// Phase 2 of the chunked GDN-2 prefill ("v2" in bench/NOTES.md; see gdn2_chunk_phases.h for the
// contract and the workspace layout): a sequential state pass followed by a parallel output pass.
//
// State pass, one block per (state-column block of DVB columns, value head, sequence), 8 warps,
// sequential over the sequence's chunks; per chunk (rows past the chunk's end are zero):
//   U = U' - Y S            written over U' in the workspace
//   S = diag(gamma) S + Ktail^T U
// with the state block in registers (warp w: state rows 16w..16w+15), the products on the tensor
// cores (mma.sync tf32: 3xTF32 split, or single products for Gdn2PrefillPrecision::kTf32, whose
// operands every writer rounds to tf32: phase 1, and here U and S), and the next chunk's Y /
// Ktail / U' / gamma tiles copied with cp.async into the other of two shared-memory stages while
// the current chunk computes. The
// start state of every chunk but the first goes to the extra region; the first chunk's outputs
// O = Qg S + Aqk U are computed here (its start state is the slot's, which this pass overwrites
// with the final state).
// Output pass, one block per (chunk past a sequence's first, value head, 64 state columns):
//   O = Qg S_start + Aqk U  (Aqk lower triangular; entries above the diagonal are not read).
//
// Extra region (from ExtraBase, floats), for a launch of T tokens:
//   states [T / C][HV][dk][dv]  chunk-start states; chunk c >= 1 of sequence s has index
//                               cu[s] / C + c - 1 (distinct over the batch: the chunks of s end
//                               below cu[s + 1] / C, where the next sequence's indices start)
//   table  [T / C] int2         per index: {first token of the chunk, its length}, or {-1, 0}
//                               for an index no chunk has; written by the state pass.
//
// State-column blocks: Gdn2PrefillArgs::splits 8 / 4 / 2 give DVB = 16 / 32 / 64; 0 picks by the
// grid size (small DVB when few (sequence, head) pairs must fill the GPU).
#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/gdn2_chunk_phases.h"
#include "kernels/cuda/gdn2_chunk_state_pass_mma.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda::gdn2_chunk {
namespace {

using p2v2::FragA;
using p2v2::FragB;
using p2v2::LdmatrixA;
using p2v2::Mma;
using p2v2::StoreSplit2;

constexpr int kThreads = 256;
constexpr int kYP = kDk + 4;  // pitch of Y / Ktail / Qg tiles (16-byte rows, conflict-free)
constexpr int kAP = kC + 4;   // pitch of Aqk tiles
constexpr int kStateFloats = kDk * kDv;

// State-pass shared memory (floats): two stages of {Y [C][kYP], Ktail [C][kYP], U' [C][kSP],
// gamma [dk]}, then -S [dk][kSP] (the B operand of U = U' + Y (-S)). Up to 32 columns (kPre)
// the B operands -S and U are kept split (x = hi + lo, StoreSplit2) as they are written: S's hi
// parts in the -S array and its lo parts after it, U's hi parts over U' and its lo parts last,
// so the products, which read each of them from 4 or 8 warps, load them without converting.
// (At 64 columns the lo arrays would not fit; single tf32 products, !kSplit, need none.) Offsets
// are multiples of 4.
template <int DVB, bool kSplit>
struct StateSmem {
  static constexpr int kSP = DVB + 8;  // conflict-free B-fragment reads and C-fragment writes
  static constexpr bool kPre = kSplit && DVB <= 32;
  static constexpr int kY = 0;
  static constexpr int kKt = kC * kYP;
  static constexpr int kU = 2 * kC * kYP;
  static constexpr int kGam = kU + kC * kSP;
  static constexpr int kStage = kGam + kDk;
  static constexpr int kS = 2 * kStage;
  static constexpr int kSlo = kS + kDk * kSP;
  static constexpr int kUlo = kSlo + kDk * kSP;
  static constexpr int kFloats = kPre ? kUlo + kC * kSP : kSlo;
};

// B fragment {b0 at i0, b1 at i1} of an operand stored whole (hi) or split (hi, lo).
template <bool kPre, bool kSplit>
__device__ __forceinline__ FragB LoadB(const float* hi, const float* lo, int i0, int i1) {
  if constexpr (kPre) {
    return FragB::Presplit(hi[i0], hi[i1], lo[i0], lo[i1]);
  } else {
    return FragB::Make<kSplit>(hi[i0], hi[i1]);
  }
}
// Two operand values as stored for the products (StoredOperand): rounded to tf32 unless split.
template <bool kSplit>
__device__ __forceinline__ float2 Operand2(float x0, float x1) {
  return make_float2(p2v2::StoredOperand<!kSplit>(x0), p2v2::StoredOperand<!kSplit>(x1));
}
// Stores x0, x1 at i, i + 1 of such an operand.
template <bool kPre, bool kSplit>
__device__ __forceinline__ void StoreB2(float* hi, float* lo, int i, float x0, float x1) {
  if constexpr (kPre) {
    StoreSplit2(hi + i, lo + i, x0, x1);
  } else {
    *reinterpret_cast<float2*>(hi + i) = Operand2<kSplit>(x0, x1);
  }
}

// Copies of one chunk's tiles into a stage (rows >= len zero-filled, nothing read for them).
// Thread tid copies 16-byte piece tid % 32 of Y / Ktail rows tid / 32 + 8j, and a fixed piece of
// U' rows.
template <int DVB, bool kSplit>
__device__ __forceinline__ void IssueChunk(float* st, const float* __restrict__ ws, int64_t start,
                                           int len, int hv, int num_v_heads, int n0,
                                           const float* gamma, int tid) {
  using L = StateSmem<DVB, kSplit>;
  const int64_t tok = static_cast<int64_t>(num_v_heads) * kWsRow;
  {
    const int r = tid >> 5, c4 = (tid & 31) * 4;
    const float* src = ws + ((start + r) * num_v_heads + hv) * kWsRow + c4;
    float* dst = st + r * kYP + c4;
#pragma unroll
    for (int j = 0; j < kC / 8; ++j) {
      const bool in = r + 8 * j < len;
      const float* row = in ? src + 8 * j * tok : ws;
      CpAsync16(dst + L::kY + 8 * j * kYP, row + kOffY, in);
      CpAsync16(dst + L::kKt + 8 * j * kYP, row + kOffKt, in);
    }
  }
  {
    constexpr int kPieces = DVB / 4, kRows = kThreads / kPieces;
    const int r = tid / kPieces, c4 = (tid % kPieces) * 4;
    const float* src = ws + ((start + r) * num_v_heads + hv) * kWsRow + kOffU + n0 + c4;
#pragma unroll
    for (int j = 0; j < kC / kRows; ++j) {
      const bool in = r + kRows * j < len;
      CpAsync16(st + L::kU + (r + kRows * j) * L::kSP + c4, in ? src + kRows * j * tok : ws, in);
    }
  }
  if (tid < kDk / 4) CpAsync16(st + L::kGam + tid * 4, gamma + tid * 4, true);
}

// cp.async of columns [off, off + N) of one chunk's workspace rows into `dst` (PITCH floats per
// row); rows >= len are zero-filled and nothing is read for them. `base` is the chunk's first
// row for this head; consecutive tokens' rows are `tok` floats apart.
template <int N, int PITCH>
__device__ __forceinline__ void IssueChunkColumns(float* dst, const float* __restrict__ base,
                                                  int64_t tok, int off, int len, int tid) {
#pragma unroll 4
  for (int i = tid; i < kC * (N / 4); i += kThreads) {
    const int t = i / (N / 4), c4 = (i % (N / 4)) * 4;
    const bool in = t < len;
    CpAsync16(dst + t * PITCH + c4, base + (in ? t : 0) * tok + off + c4, in);
  }
}

// A fragment of Aqk rows 16mt.., columns 8ks.. with the entries above the diagonal zeroed (they
// are not part of the contract).
__device__ __forceinline__ void LoadAqkFrag(float (&a)[4], const float* as, int mt, int ks,
                                            int lane) {
  LdmatrixA(a, as + 16 * mt * kAP + 8 * ks, kAP, lane);
  if (ks >= 2 * mt) {
    const int t = 16 * mt + lane / 4, j = 8 * ks + lane % 4;
    if (j > t) a[0] = 0.f;
    if (j > t + 8) a[1] = 0.f;
    if (j + 4 > t) a[2] = 0.f;
    if (j + 4 > t + 8) a[3] = 0.f;
  }
}

// Step a of the state pass for one chunk: U = U' + Y (-S) for this warp's tiles (token tile mt,
// column tiles (warp >> 2) + 2i), written in place over the staged U' (split: hi there, lo in
// ulo) and whole to the workspace (rows < len). With kWithO also O = Qg S (into oacc, negated:
// Qg (-S)). sslo / ulo: the lo parts (kPre only). The U written to the workspace is an operand of
// the output pass (rounded to tf32 when !kSplit).
template <int DVB, bool kSplit, bool kWithO>
__device__ __forceinline__ void StepU(const float* ys, float* us, float* ulo, const float* ss,
                                      const float* sslo, const float* qgs,
                                      float (&oacc)[DVB / 16][4], float* __restrict__ ws_u,
                                      int64_t tok_stride, int len, int warp, int lane) {
  constexpr int kSP = StateSmem<DVB, kSplit>::kSP;
  constexpr bool kPre = StateSmem<DVB, kSplit>::kPre;
  constexpr int kNA = DVB / 16;
  constexpr int kSets = kNA >= 4 ? 1 : 4 / kNA;  // independent accumulator chains
  const int g = lane / 4, t4 = lane % 4, mt = warp & 3;
  const int row0 = 16 * mt + g;
  float acc[kSets][kNA][4];
#pragma unroll
  for (int i = 0; i < kNA; ++i) {
    const int col = 8 * ((warp >> 2) + 2 * i) + 2 * t4;
    const float2 u0 = *reinterpret_cast<const float2*>(us + row0 * kSP + col);
    const float2 u1 = *reinterpret_cast<const float2*>(us + (row0 + 8) * kSP + col);
    acc[0][i][0] = u0.x;
    acc[0][i][1] = u0.y;
    acc[0][i][2] = u1.x;
    acc[0][i][3] = u1.y;
#pragma unroll
    for (int s = 1; s < kSets; ++s) acc[s][i][0] = acc[s][i][1] = acc[s][i][2] = acc[s][i][3] = 0.f;
    if constexpr (kWithO) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
  }
#pragma unroll
  for (int ks = 0; ks < kDk / 8; ++ks) {
    float a[4];
    LdmatrixA(a, ys + 16 * mt * kYP + 8 * ks, kYP, lane);
    const FragA fy = FragA::Make<kSplit>(a);
    FragA fq;
    if constexpr (kWithO) {
      float q[4];
      LdmatrixA(q, qgs + 16 * mt * kYP + 8 * ks, kYP, lane);
      fq = FragA::Make<kSplit>(q);
    }
#pragma unroll
    for (int i = 0; i < kNA; ++i) {
      const int ncol = 8 * ((warp >> 2) + 2 * i) + g;
      const FragB b = LoadB<kPre, kSplit>(ss, sslo, (8 * ks + t4) * kSP + ncol,
                                          (8 * ks + t4 + 4) * kSP + ncol);
      Mma<kSplit>(acc[ks % kSets][i], fy, b);
      if constexpr (kWithO) Mma<kSplit>(oacc[i], fq, b);
    }
  }
#pragma unroll
  for (int i = 0; i < kNA; ++i) {
#pragma unroll
    for (int s = 1; s < kSets; ++s)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[0][i][e] += acc[s][i][e];
    const int col = 8 * ((warp >> 2) + 2 * i) + 2 * t4;
    // Rows >= len are zero.
    const bool in0 = row0 < len, in1 = row0 + 8 < len;
    StoreB2<kPre, kSplit>(us, ulo, row0 * kSP + col, in0 ? acc[0][i][0] : 0.f,
                          in0 ? acc[0][i][1] : 0.f);
    StoreB2<kPre, kSplit>(us, ulo, (row0 + 8) * kSP + col, in1 ? acc[0][i][2] : 0.f,
                          in1 ? acc[0][i][3] : 0.f);
    if (row0 < len)
      *reinterpret_cast<float2*>(ws_u + row0 * tok_stride + col) =
          Operand2<kSplit>(acc[0][i][0], acc[0][i][1]);
    if (row0 + 8 < len)
      *reinterpret_cast<float2*>(ws_u + (row0 + 8) * tok_stride + col) =
          Operand2<kSplit>(acc[0][i][2], acc[0][i][3]);
  }
}

template <int DVB, bool kSplit>
__global__ void __launch_bounds__(kThreads, 1) Phase2StatePassKernel(
    const int32_t* __restrict__ cu, const int32_t* __restrict__ slots, char* __restrict__ pool,
    int64_t slot_stride, int64_t recurrent_offset, int num_v_heads, float* __restrict__ ws,
    int64_t gamma_base, float* __restrict__ states, int2* __restrict__ table,
    float* __restrict__ o, int64_t o_stride) {
  using L = StateSmem<DVB, kSplit>;
  constexpr int kSP = L::kSP;
  constexpr bool kPre = L::kPre;
  constexpr int kNA = DVB / 16;
  constexpr int kNS = DVB / 8;                      // state column tiles per warp
  constexpr int kSets = kNS >= 4 ? 1 : 4 / kNS;     // independent accumulator chains in step c
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* st0 = smem;
  float* st1 = smem + L::kStage;
  float* ss = smem + L::kS;
  float* sslo = kPre ? smem + L::kSlo : nullptr;
  float* ulo = kPre ? smem + L::kUlo : nullptr;

  const int cb = blockIdx.x, hv = blockIdx.y, s = blockIdx.z;
  const int n0 = cb * DVB;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int seq_start = cu[s], seq_end = cu[s + 1];
  const int nchunks = (seq_end - seq_start + kC - 1) / kC;
  const int idx0 = seq_start / kC;
  // The output pass may become resident as this grid's blocks retire (it waits for all of them).
  cudaTriggerProgrammaticLaunchCompletion();
  if (nchunks == 0) return;  // no table entries either

  // Before the dependency wait only what phase 1 does not write is read: the slot's state.
  float* state = reinterpret_cast<float*>(pool + static_cast<int64_t>(slots[s]) * slot_stride +
                                          recurrent_offset) +
                 static_cast<int64_t>(hv) * kStateFloats;
  // State rows of this warp in C-fragment layout: sacc[nt] covers rows sr0 (+8), columns
  // 8nt + 2t (+1) of the block.
  const int sr0 = 16 * warp + g;
  float sacc[kNS][4];
#pragma unroll
  for (int nt = 0; nt < kNS; ++nt) {
    const int col = 8 * nt + 2 * t4;
    const float2 v0 = *reinterpret_cast<const float2*>(state + sr0 * kDv + n0 + col);
    const float2 v1 = *reinterpret_cast<const float2*>(state + (sr0 + 8) * kDv + n0 + col);
    sacc[nt][0] = v0.x;
    sacc[nt][1] = v0.y;
    sacc[nt][2] = v1.x;
    sacc[nt][3] = v1.y;
    StoreB2<kPre, kSplit>(ss, sslo, sr0 * kSP + col, -v0.x, -v0.y);
    StoreB2<kPre, kSplit>(ss, sslo, (sr0 + 8) * kSP + col, -v1.x, -v1.y);
  }

  // Phase 1's workspace is complete after this (when launched as its programmatic dependent;
  // otherwise this returns at once).
  cudaGridDependencySynchronize();
  if (hv == 0 && cb == 0) {
    for (int i = idx0 + tid; i < seq_end / kC; i += kThreads) {
      const int c = i - idx0 + 1;
      const int cstart = seq_start + c * kC;
      table[i] = c < nchunks ? make_int2(cstart, min(kC, seq_end - cstart)) : make_int2(-1, 0);
    }
  }
  const int64_t tok_stride = static_cast<int64_t>(num_v_heads) * kWsRow;
  const float* gamma0 =
      ws + gamma_base + ((static_cast<int64_t>(s) + idx0) * num_v_heads + hv) * kDk;
  const int64_t gamma_step = static_cast<int64_t>(num_v_heads) * kDk;  // per chunk slot
  {
    const int len0 = min(kC, seq_end - seq_start);
    IssueChunk<DVB, kSplit>(st0, ws, seq_start, len0, hv, num_v_heads, n0, gamma0, tid);
    // Chunk 0's Qg and Aqk (for its outputs) into stage 1's Y / Ktail areas.
    const float* base0 = ws + (static_cast<int64_t>(seq_start) * num_v_heads + hv) * kWsRow;
    IssueChunkColumns<kDk, kYP>(st1 + L::kY, base0, tok_stride, kOffQg, len0, tid);
    IssueChunkColumns<kC, kAP>(st1 + L::kKt, base0, tok_stride, kOffA, len0, tid);
    CpAsyncCommit();
  }

  const int mt = warp & 3;
  const int row0 = 16 * mt + g;
  for (int c = 0; c < nchunks; ++c) {
    float* st = (c & 1) ? st1 : st0;
    const int64_t start = seq_start + static_cast<int64_t>(c) * kC;
    const int len = min(static_cast<int64_t>(kC), seq_end - start);
    CpAsyncWait<0>();
    __syncthreads();  // chunk c landed for every thread; chunk c-1's readers are done
    if (c >= 1 && c + 1 < nchunks) {
      const int64_t nstart = start + kC;
      IssueChunk<DVB, kSplit>((c & 1) ? st0 : st1, ws, nstart,
                              min(static_cast<int64_t>(kC), seq_end - nstart), hv, num_v_heads,
                              n0, gamma0 + (c + 1) * gamma_step, tid);
      CpAsyncCommit();
    }
    float* ws_u = ws + (start * num_v_heads + hv) * kWsRow + kOffU + n0;
    float* us = st + L::kU;
    if (c == 0) {
      float oacc[kNA][4];
      StepU<DVB, kSplit, true>(st + L::kY, us, ulo, ss, sslo, st1 + L::kY, oacc, ws_u,
                               tok_stride, len, warp, lane);
      __syncthreads();  // U of the chunk complete in shared memory
      // O = Qg S + Aqk U (oacc holds Qg (-S)); Aqk k-steps past the diagonal tile are zero.
      const float* as = st1 + L::kKt;
#pragma unroll
      for (int i = 0; i < kNA; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) oacc[i][e] = -oacc[i][e];
#pragma unroll
      for (int ks = 0; ks < kC / 8; ++ks) {
        if (ks > 2 * mt + 1) break;
        float a[4];
        LoadAqkFrag(a, as, mt, ks, lane);
        const FragA fa = FragA::Make<kSplit>(a);
#pragma unroll
        for (int i = 0; i < kNA; ++i) {
          const int ncol = 8 * ((warp >> 2) + 2 * i) + g;
          Mma<kSplit>(oacc[i], fa,
                      LoadB<kPre, kSplit>(us, ulo, (8 * ks + t4) * kSP + ncol,
                                          (8 * ks + t4 + 4) * kSP + ncol));
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
      __syncthreads();  // Qg / Aqk of chunk 0 (stage 1) read by every warp
      if (nchunks > 1) {
        const int64_t nstart = start + kC;
        IssueChunk<DVB, kSplit>(st1, ws, nstart, min(static_cast<int64_t>(kC), seq_end - nstart),
                                hv, num_v_heads, n0, gamma0 + gamma_step, tid);
        CpAsyncCommit();
      }
    } else {
      float unused[kNA][4];
      StepU<DVB, kSplit, false>(st + L::kY, us, ulo, ss, sslo, nullptr, unused, ws_u,
                                tok_stride, len, warp, lane);
      __syncthreads();  // U of the chunk complete in shared memory; -S reads done
    }

    // Step c: S = diag(gamma) S + Ktail^T U for state rows sr0, sr0 + 8; A[m][k] = Ktail[k][m].
    {
      const float* kts = st + L::kKt;
      const float* gam = st + L::kGam;
      const float g0 = gam[sr0], g1 = gam[sr0 + 8];
      float part[kSets > 1 ? kSets - 1 : 1][kNS][4];
#pragma unroll
      for (int nt = 0; nt < kNS; ++nt) {
        sacc[nt][0] *= g0;
        sacc[nt][1] *= g0;
        sacc[nt][2] *= g1;
        sacc[nt][3] *= g1;
#pragma unroll
        for (int x = 0; x < kSets - 1; ++x)
          part[x][nt][0] = part[x][nt][1] = part[x][nt][2] = part[x][nt][3] = 0.f;
      }
      const int ksteps = (len + 7) / 8;
#pragma unroll
      for (int ks = 0; ks < kC / 8; ++ks) {
        if (ks >= ksteps) break;
        float a[4];
        a[0] = kts[(8 * ks + t4) * kYP + sr0];
        a[1] = kts[(8 * ks + t4) * kYP + sr0 + 8];
        a[2] = kts[(8 * ks + t4 + 4) * kYP + sr0];
        a[3] = kts[(8 * ks + t4 + 4) * kYP + sr0 + 8];
        const FragA fk = FragA::Make<kSplit>(a);
#pragma unroll
        for (int nt = 0; nt < kNS; ++nt) {
          const FragB b = LoadB<kPre, kSplit>(us, ulo, (8 * ks + t4) * kSP + 8 * nt + g,
                                              (8 * ks + t4 + 4) * kSP + 8 * nt + g);
          if (ks % kSets == 0)
            Mma<kSplit>(sacc[nt], fk, b);
          else
            Mma<kSplit>(part[(ks % kSets) - 1][nt], fk, b);
        }
      }
#pragma unroll
      for (int nt = 0; nt < kNS; ++nt)
#pragma unroll
        for (int x = 0; x < kSets - 1; ++x)
#pragma unroll
          for (int e = 0; e < 4; ++e) sacc[nt][e] += part[x][nt][e];
      // Step a of this chunk read -S before the barrier above; the next reads it after the next.
      float* snext = c + 1 < nchunks
                         ? states + ((static_cast<int64_t>(idx0) + c) * num_v_heads + hv) *
                                        kStateFloats
                         : nullptr;
#pragma unroll
      for (int nt = 0; nt < kNS; ++nt) {
        const int col = 8 * nt + 2 * t4;
        StoreB2<kPre, kSplit>(ss, sslo, sr0 * kSP + col, -sacc[nt][0], -sacc[nt][1]);
        StoreB2<kPre, kSplit>(ss, sslo, (sr0 + 8) * kSP + col, -sacc[nt][2], -sacc[nt][3]);
        if (snext != nullptr) {  // an operand of the output pass
          *reinterpret_cast<float2*>(snext + sr0 * kDv + n0 + col) =
              Operand2<kSplit>(sacc[nt][0], sacc[nt][1]);
          *reinterpret_cast<float2*>(snext + (sr0 + 8) * kDv + n0 + col) =
              Operand2<kSplit>(sacc[nt][2], sacc[nt][3]);
        }
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

// Output-pass shared memory (floats): Qg [C][kYP], S [dk][kOSP], Aqk [C][kAP], U [C][kOSP].
constexpr int kOCols = 64;
constexpr int kOSP = kOCols + 8;
constexpr int kOQ = 0;
constexpr int kOS = kC * kYP;
constexpr int kOA = kOS + kDk * kOSP;
constexpr int kOU = kOA + kC * kAP;
constexpr int kOFloats = kOU + kC * kOSP;

// Output pass: block (2 * index + column half, value head); warp w owns token tile w % 4 and
// column tiles w / 4 + 2i (i < 4) of the 64 columns.
template <bool kSplit>
__global__ void __launch_bounds__(kThreads, 2) Phase2OutputKernel(
    int num_v_heads, const float* __restrict__ ws, const float* __restrict__ states,
    const int2* __restrict__ table, float* __restrict__ o, int64_t o_stride) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* qs = smem + kOQ;
  float* ss = smem + kOS;
  float* as = smem + kOA;
  float* us = smem + kOU;
  // Everything here is written by the state pass (this is its programmatic dependent).
  cudaGridDependencySynchronize();
  const int half = blockIdx.x & 1;
  const int64_t idx = blockIdx.x >> 1;
  const int hv = blockIdx.y;
  const int2 e = table[idx];
  if (e.x < 0) return;
  const int64_t start = e.x;
  const int len = e.y;
  const int n0 = half * kOCols;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;

  const int64_t tok = static_cast<int64_t>(num_v_heads) * kWsRow;
  const float* base = ws + (start * num_v_heads + hv) * kWsRow;
  const float* sg = states + (idx * num_v_heads + hv) * kStateFloats + n0;
  IssueChunkColumns<kDk, kYP>(qs, base, tok, kOffQg, len, tid);
#pragma unroll 4
  for (int i = tid; i < kDk * (kOCols / 4); i += kThreads) {
    const int r = i / (kOCols / 4), c4 = (i % (kOCols / 4)) * 4;
    CpAsync16(ss + r * kOSP + c4, sg + r * kDv + c4, true);
  }
  CpAsyncCommit();
  IssueChunkColumns<kC, kAP>(as, base, tok, kOffA, len, tid);
  IssueChunkColumns<kOCols, kOSP>(us, base, tok, kOffU + n0, len, tid);
  CpAsyncCommit();

  const int mt = warp & 3;
  const int row0 = 16 * mt + g;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  CpAsyncWait<1>();
  __syncthreads();
#pragma unroll 4
  for (int ks = 0; ks < kDk / 8; ++ks) {
    float a[4];
    LdmatrixA(a, qs + 16 * mt * kYP + 8 * ks, kYP, lane);
    const FragA fq = FragA::Make<kSplit>(a);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ncol = 8 * ((warp >> 2) + 2 * i) + g;
      Mma<kSplit>(acc[i], fq,
                  FragB::Make<kSplit>(ss[(8 * ks + t4) * kOSP + ncol],
                                      ss[(8 * ks + t4 + 4) * kOSP + ncol]));
    }
  }
  CpAsyncWait<0>();
  __syncthreads();
#pragma unroll
  for (int ks = 0; ks < kC / 8; ++ks) {
    if (ks > 2 * mt + 1) break;
    float a[4];
    LoadAqkFrag(a, as, mt, ks, lane);
    const FragA fa = FragA::Make<kSplit>(a);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ncol = 8 * ((warp >> 2) + 2 * i) + g;
      Mma<kSplit>(acc[i], fa,
                  FragB::Make<kSplit>(us[(8 * ks + t4) * kOSP + ncol],
                                      us[(8 * ks + t4 + 4) * kOSP + ncol]));
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int col = n0 + 8 * ((warp >> 2) + 2 * i) + 2 * t4;
    float* ob = o + static_cast<int64_t>(hv) * kDv + col;
    if (row0 < len)
      *reinterpret_cast<float2*>(ob + (start + row0) * o_stride) = make_float2(acc[i][0], acc[i][1]);
    if (row0 + 8 < len)
      *reinterpret_cast<float2*>(ob + (start + row0 + 8) * o_stride) =
          make_float2(acc[i][2], acc[i][3]);
  }
}

// DVB for the state pass: the fewest waves of one block per SM, weighted by a block's relative
// time per chunk (the tile copies are the same for every DVB, the products grow with it).
int PickColumns(int num_v_heads, int num_seqs) {
  const int64_t pairs = static_cast<int64_t>(num_v_heads) * num_seqs;
  const int sms = NumSms();
  int best = 16;
  double best_cost = 0;
  for (const auto& [dvb, cost] : {std::pair{16, 1.0}, std::pair{32, 1.6}, std::pair{64, 2.8}}) {
    const int64_t blocks = pairs * (kDv / dvb);
    const double c = static_cast<double>((blocks + sms - 1) / sms) * cost;
    if (dvb == 16 || c < best_cost) {
      best = dvb;
      best_cost = c;
    }
  }
  return best;
}

template <int DVB, bool kSplit>
absl::Status LaunchStatePass(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                             float* states, int2* table, bool after_phase1, cudaStream_t stream) {
  constexpr int smem = StateSmem<DVB, kSplit>::kFloats * 4;
  DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      Phase2StatePassKernel<DVB, kSplit>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // After phase 1, a programmatic dependent of it: its blocks take the SMs phase 1's last blocks
  // leave and load the slot states while those finish. (Otherwise a plain launch: the kernel
  // before might write the states.)
  return LaunchKernel("Phase2StatePassKernel", Phase2StatePassKernel<DVB, kSplit>,
                      dim3(kDv / DVB, shape.num_v_heads, a.num_seqs), dim3(kThreads), smem, stream,
                      after_phase1, a.cu_seqlens, a.slots, static_cast<char*>(a.pool),
                      a.slot_stride_bytes, a.recurrent_offset, shape.num_v_heads, a.workspace,
                      GammaBase(a.total_tokens, shape.num_v_heads, a.precision), states, table,
                      a.o, a.o_stride);
}

// Phase 2 with 3xTF32 (kSplit) or single tf32 products.
template <bool kSplit>
absl::Status LaunchPhase2Products(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                                  bool after_phase1, cudaStream_t stream) {
  const int64_t nidx = a.total_tokens / kC;
  float* states =
      a.workspace + ExtraBase(a.total_tokens, a.num_seqs, shape.num_v_heads, a.precision);
  int2* table = reinterpret_cast<int2*>(states + nidx * shape.num_v_heads * kStateFloats);
  if (nidx > (int64_t{1} << 30))
    return absl::InvalidArgumentError("gdn2 prefill: total_tokens too large for the state pass");
  const int dvb = a.splits == 0 ? PickColumns(shape.num_v_heads, a.num_seqs) : kDv / a.splits;
  if (dvb != 16 && dvb != 32 && dvb != 64)
    return absl::InvalidArgumentError(
        absl::StrCat("gdn2 prefill: splits must be 0, 2, 4 or 8, got ", a.splits));
  const absl::Status st =
      dvb == 16   ? LaunchStatePass<16, kSplit>(shape, a, states, table, after_phase1, stream)
      : dvb == 32 ? LaunchStatePass<32, kSplit>(shape, a, states, table, after_phase1, stream)
                  : LaunchStatePass<64, kSplit>(shape, a, states, table, after_phase1, stream);
  if (!st.ok() || nidx == 0) return st;
  constexpr int smem = kOFloats * 4;
  DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      Phase2OutputKernel<kSplit>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  return LaunchKernel("Phase2OutputKernel", Phase2OutputKernel<kSplit>,
                      dim3(static_cast<unsigned>(2 * nidx), shape.num_v_heads), dim3(kThreads),
                      smem, stream, /*programmatic=*/true, shape.num_v_heads, a.workspace, states,
                      table, a.o, a.o_stride);
}

}  // namespace

int64_t Phase2ExtraFloats(const Gdn2PrefillShape& shape, int64_t total_tokens, int,
                          Gdn2PrefillPrecision p) {
  if (p == Gdn2PrefillPrecision::kBf16) return 0;  // its one pass keeps no chunk-start states
  const int64_t n = total_tokens / kC;
  return n * shape.num_v_heads * kStateFloats + 2 * n;
}

absl::Status LaunchPhase2(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                          bool after_phase1, cudaStream_t stream) {
  return a.precision == Gdn2PrefillPrecision::kFp32
             ? LaunchPhase2Products<true>(shape, a, after_phase1, stream)
             : LaunchPhase2Products<false>(shape, a, after_phase1, stream);
}

}  // namespace deltaserve::cuda::gdn2_chunk
