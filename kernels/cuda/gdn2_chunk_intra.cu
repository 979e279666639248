// Phase 1 of the chunked GDN-2 prefill ("v3" in bench/NOTES.md): per (chunk of kC tokens,
// sequence, value head) the cumulative log-decay G,
// T = strict-lower [sum_c b_t k_t k_j exp(G_t - G_j)], Aqk = lower [sum_c q_t k_j exp(G_t - G_j)],
// (I + T)[Y | U'] = [exp(G) b k | w v],
// Qg = exp(G) q, Ktail = exp(G_last - G) k and gamma = exp(G_last), written to the workspace in
// the layout of gdn2_chunk_phases.h (the contract with phase 2).
//
// Structure of one block (256 threads, ~94-104 KB shared memory, two blocks per SM):
//  * q, k, g, b stream through shared memory in slices of kSlice key channels (cp.async, two
//    stages); per slice every thread scans 4 tokens of one channel (G in the log2 domain),
//    writes Qg and Ktail, keeps E = exp(G) b k for the substitution, and stores the factored
//    operands of T / Aqk in [channel][token] arrays;
//  * T and Aqk accumulate in registers over the slices, by 4x4 tiles: an off-diagonal tile
//    (rows 4R.., columns 4J.., R > J) uses
//      exp(G_t - G_j) = exp(G_t - G_4R) * exp(G_4R - G_4J+3) * exp(G_4J+3 - G_j),
//    three factors with exponents <= 0 (no overflow even at exp(-30) per token; an underflowed
//    factor only hides a product smaller than itself); the diagonal tiles use the direct
//    exponent of the difference;
//  * w v is loaded as float4 rows (all of a thread's loads in flight at once) into shared memory
//    over the operand arrays;
//  * the forward substitution runs one right-hand-side column per thread in registers (Y
//    columns from E, U' columns from w v, both in shared memory), reading T rows as broadcasts;
//    for a bf16 workspace instead (I + T)^-1 is formed by 16 x 16 blocks and multiplied with
//    [E | Z] on the tensor cores (SolveByInverse), the results staged for 16-byte stores.
// (A bulk L2 prefetch of the chunk's input rows at the start, once part of this design, cost
// 4-8 % and was removed: bench/NOTES.md.)
// Inputs q, k, b, v, w are f32 or bf16 (TIn; converted to fp32 as they are read), g is f32.
// All arithmetic is fp32; exponentials are ex2.approx on log2-scaled G. With kRound
// (Gdn2PrefillPrecision::kTf32) the operands phase 2 multiplies (Y, Qg, Ktail, U', Aqk) are
// stored rounded to tf32, for kBf16 as bf16 (TWs); gamma is always f32.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/bf16_pack.cuh"
#include "kernels/cuda/gdn2_chunk_phases.h"
#include "kernels/cuda/gdn2_chunk_state_pass_mma.cuh"
#include "kernels/cuda/mma_bf16.cuh"
#include "kernels/cuda/ready_word.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda::gdn2_chunk {
namespace {

constexpr int kThreads = 256;
constexpr int kSlice = 16;                   // key channels per slice
constexpr int kSlices = kDk / kSlice;        // 8
constexpr int kStages = 2;
constexpr int kDP = kC + 4;                  // [channel][token] operand arrays
constexpr int kDerived = kSlice * kDP;
constexpr int kEP = kDk + 4;                 // E [token][channel]
constexpr int kTP = kC + 4;                  // T [token][token]
constexpr int kTiles = kC / 4;               // 16 tiles of 4 rows / columns
constexpr int kOffDiagTiles = kTiles * (kTiles - 1) / 2;  // 120

// Operand arrays of a slice, [kSlice][kDP] each.
enum Derived { kQf = 0, kBf, kKc, kG2, kQr, kBKr, kKr, kNumDerived };

// Shared memory (offsets in floats) for inputs q / k / b / v / w of type TIn. A landing stage
// holds one slice: g [kC][kLandPitch] floats, then q, k, b [kC][kInPitch] of TIn each (rows
// padded for conflict-free column reads, 16-byte aligned).
template <typename TIn>
struct Smem {
  static constexpr int kLandPitch = kSlice + 4;
  static constexpr int kInPitch = kSlice + 16 / static_cast<int>(sizeof(TIn));  // elements
  static constexpr int kInArrayFloats = kC * kInPitch * static_cast<int>(sizeof(TIn)) / 4;
  static constexpr int kLandStage = kC * kLandPitch + 3 * kInArrayFloats;
  static constexpr int kLand = 0;
  static constexpr int kDer = kLand + kStages * kLandStage;
  static constexpr int kE = kDer + kNumDerived * kDerived;
  static constexpr int kTot = kE + kC * kEP;
  static constexpr int kFloats = kTot + kTiles * kSlice;
  // Once the slice loop is done, T aliases the landing stages and Z = w v (the right-hand side
  // of U', pitch kEP like E) the rest of them and the operand arrays.
  static constexpr int kZ = kC * kTP;
  static_assert(kC * kTP <= kStages * kLandStage, "T must fit the landing area");
  static_assert(kZ + kC * kEP <= kE, "Z must end before E");
  // Scratch of the blocked inverse (SolveByInverse): up to three 16 x 16 blocks after Z.
  static constexpr int kM = kZ + kC * kEP;
  static_assert(kM + 3 * 256 <= kE, "the inverse's scratch must end before E");
  static_assert(kInArrayFloats % 4 == 0 && kLandStage % 4 == 0, "16-byte aligned arrays");
};

// Four consecutive inputs from 16-byte (float) or 8-byte (bf16) aligned `p`, as floats.
__device__ __forceinline__ float4 Load4(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ float4 Load4(const __nv_bfloat16* p) {
  return Bf16x4ToFloat4(__ldg(reinterpret_cast<const uint2*>(p)));
}
static_assert(kThreads == kTiles * kSlice, "precompute maps one thread per (4 tokens, channel)");

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float Ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

using p2v2::StoredOperand;  // workspace operands: rounded to tf32 for single tf32 products

// A workspace operand as stored: TWs f32 (rounded to tf32 with kRound) or bf16 (nearest).
template <typename TWs, bool kRound>
__device__ __forceinline__ TWs Stored(float x) {
  if constexpr (std::is_same_v<TWs, float>) {
    return StoredOperand<kRound>(x);
  } else {
    return __float2bfloat16_rn(x);
  }
}

// Four consecutive operands at p (16-byte aligned for f32, 8-byte for bf16).
template <typename TWs, bool kRound>
__device__ __forceinline__ void Store4(TWs* p, float x, float y, float z, float w) {
  if constexpr (std::is_same_v<TWs, float>) {
    *reinterpret_cast<float4*>(p) =
        make_float4(StoredOperand<kRound>(x), StoredOperand<kRound>(y),
                    StoredOperand<kRound>(z), StoredOperand<kRound>(w));
  } else {
    StoreBf16x4(p, x, y, z, w);
  }
}

using mma::MmaBf16;
using mma::PackBf16;

// (I + T) [Y | U'] = [E | Z] for a bf16 workspace, on the tensor cores: A = (I + T)^-1 by 16 x 16
// blocks, written over T's strictly lower part in `ts` (diagonal blocks by substitution, one
// column per thread; block row i then A_ij = -A_ii sum_{k=j}^{i-1} T_ik A_kj, through `scratch`),
// then [Y | U'] = A [E | Z] with mma.sync m16n8k16 (bf16 operands, fp32 sums): warp w takes 32
// of the 256 right-hand-side columns over all C rows. Row t of the result goes to out + t *
// tok_step (Y at kOffY, U' at kOffU) for t < len, staged through E's area (which it overwrites)
// for whole 16-byte stores. All 256 threads must call it.
__device__ __forceinline__ void SolveByInverse(float* ts, float* es, const float* zs,
                                               float* scratch, __nv_bfloat16* out,
                                               int64_t tok_step, int len, int tid) {
  // a. The diagonal blocks' inverses (threads 0..63: block tid / 16, column tid % 16).
  float x[16];
  if (tid < kC) {
    const int b = tid / 16, c = tid % 16;
    const float* blk = ts + 16 * b * (kTP + 1);
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      float acc = r == c ? 1.f : 0.f;
#pragma unroll
      for (int m = 0; m < r; ++m) acc = fmaf(-blk[r * kTP + m], x[m], acc);
      x[r] = r < c ? 0.f : acc;
    }
  }
  __syncthreads();
  if (tid < kC) {
    float* blk = ts + 16 * (tid / 16) * (kTP + 1) + tid % 16;
#pragma unroll
    for (int r = 0; r < 16; ++r) blk[r * kTP] = x[r];
  }
  __syncthreads();
  // b. Block rows 1..3; thread (r, c) = (tid / 16, tid % 16) of every block of the row.
  {
    const int r = tid / 16, c = tid % 16;
#pragma unroll
    for (int i = 1; i < 4; ++i) {
      const float* row = ts + (16 * i + r) * kTP;
#pragma unroll
      for (int j = 0; j < i; ++j) {
        float acc = 0.f;
#pragma unroll
        for (int k = j; k < i; ++k)
#pragma unroll
          for (int m = 0; m < 16; ++m)
            acc = fmaf(row[16 * k + m], ts[(16 * k + m) * kTP + 16 * j + c], acc);
        scratch[j * 256 + r * 16 + c] = acc;
      }
      __syncthreads();
#pragma unroll
      for (int j = 0; j < i; ++j) {
        float acc = 0.f;
#pragma unroll
        for (int m = 0; m < 16; ++m)
          acc = fmaf(row[16 * i + m], scratch[j * 256 + m * 16 + c], acc);
        ts[(16 * i + r) * kTP + 16 * j + c] = -acc;
      }
      __syncthreads();
    }
  }
  // c. [Y | U'] = A [E | Z]; A is block lower triangular (k-steps past the diagonal skipped).
  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const float* rhs = warp < 4 ? es + 32 * warp : zs + 32 * (warp - 4);
  uint32_t b[kC / 16][4][2];  // [k-step][n8 tile]
#pragma unroll
  for (int ks = 0; ks < kC / 16; ++ks)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const float* p = rhs + (16 * ks + 2 * t) * kEP + 8 * nt + g;
      b[ks][nt][0] = PackBf16(p[0], p[kEP]);
      b[ks][nt][1] = PackBf16(p[8 * kEP], p[9 * kEP]);
    }
  __syncthreads();  // every warp holds its right-hand side: E's area stages the results
  __nv_bfloat16* stage = reinterpret_cast<__nv_bfloat16*>(es);
  constexpr int kSP = 2 * kEP;  // staging pitch (bf16): 256 columns + 8
  const int col = 32 * warp + 2 * t;
#pragma unroll
  for (int mt = 0; mt < kC / 16; ++mt) {
    float acc[4][4] = {};
#pragma unroll
    for (int ks = 0; ks <= mt; ++ks) {
      const float* p = ts + (16 * mt + g) * kTP + 16 * ks + 2 * t;
      const float2 a0 = *reinterpret_cast<const float2*>(p);
      const float2 a1 = *reinterpret_cast<const float2*>(p + 8 * kTP);
      const float2 a2 = *reinterpret_cast<const float2*>(p + 8);
      const float2 a3 = *reinterpret_cast<const float2*>(p + 8 * kTP + 8);
      const uint32_t a[4] = {PackBf16(a0.x, a0.y), PackBf16(a1.x, a1.y), PackBf16(a2.x, a2.y),
                             PackBf16(a3.x, a3.y)};
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) MmaBf16(acc[nt], a, b[ks][nt][0], b[ks][nt][1]);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      __nv_bfloat16* dst = stage + (16 * mt + g + 8 * h) * kSP + col;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
        *reinterpret_cast<uint32_t*>(dst + 8 * nt) = PackBf16(acc[nt][2 * h], acc[nt][2 * h + 1]);
    }
  }
  __syncthreads();
  // Rows t < len to the workspace in 16-byte pieces: 16 of Y, then 16 of U'.
#pragma unroll
  for (int i = tid; i < kC * 32; i += kThreads) {
    const int tok = i / 32, piece = i % 32;
    if (tok >= len) break;
    const int dcol = piece < 16 ? kOffY + 8 * piece : kOffU + 8 * (piece - 16);
    *reinterpret_cast<uint4*>(out + tok * tok_step + dcol) =
        *reinterpret_cast<const uint4*>(stage + tok * kSP + 8 * piece);
  }
}

template <typename TIn>
struct Inputs {
  const TIn* q;
  const TIn* k;
  const float* g;
  const TIn* b;
  const TIn* v;
  const TIn* w;
  int64_t q_stride, k_stride, g_stride, b_stride, v_stride, w_stride;
};

template <typename TIn, typename TWs, bool kRound>
__global__ void __launch_bounds__(kThreads, 2)
    Gdn2ChunkPhase1V3Kernel(int heads_per_group, const int32_t* __restrict__ cu, Inputs<TIn> in,
                            int num_v_heads, TWs* __restrict__ ws, float* __restrict__ gammas,
                            unsigned* __restrict__ ready) {
  using L = Smem<TIn>;
  extern __shared__ __align__(16) float smem[];
  // Phase 2 is a programmatic dependent: it may become resident as these blocks retire.
  cudaTriggerProgrammaticLaunchCompletion();
  // Blocks in order of (chunk, value head), so chunk c of every head is done about together.
  const int c = blockIdx.x / num_v_heads, hv = blockIdx.x % num_v_heads, s = blockIdx.y;
  const int kh = hv / heads_per_group;
  const int64_t start = static_cast<int64_t>(cu[s]) + static_cast<int64_t>(c) * kC;
  const int64_t end = cu[s + 1];
  if (start >= end) return;
  const int len = static_cast<int>(min(static_cast<int64_t>(kC), end - start));
  const int tid = threadIdx.x;
  const int64_t row0 = start * num_v_heads + hv;
  auto ws_row = [&](int t) {
    return ws + (row0 + static_cast<int64_t>(t) * num_v_heads) * kWsRow;
  };

  // One slice of g, q, k, b into landing stage sl % kStages (rows >= len zero-filled). Thread
  // tid copies 16-byte piece tid % 4 of token tid / 4's g, and pieces tid % 4 (+ 4, + 8) of the
  // token's 3 kPieces pieces of q, k, b (in that order); the addresses are formed once.
  static_assert(kThreads == kC * 4, "four threads per token of a slice");
  constexpr int kPieces = kSlice * static_cast<int>(sizeof(TIn)) / 16;  // per input and token
  constexpr int kPieceElems = 16 / static_cast<int>(sizeof(TIn));
  const int land_t = tid / 4, land_q4 = tid % 4;
  const bool land_ok = land_t < len;
  const int64_t land_tok = start + (land_ok ? land_t : 0);
  const float* g_src = in.g + land_tok * in.g_stride + kh * kDk + land_q4 * 4;
  const TIn* in_src[3];
  int in_dst[3];  // float offset within a landing stage
#pragma unroll
  for (int j = 0; j < 3; ++j) {
    const int piece = land_q4 + 4 * j, a = piece / kPieces, sub = piece % kPieces;
    const TIn* base = a == 0 ? in.q + land_tok * in.q_stride
                      : a == 1 ? in.k + land_tok * in.k_stride
                               : in.b + land_tok * in.b_stride;
    in_src[j] = base + kh * kDk + sub * kPieceElems;
    in_dst[j] = kC * L::kLandPitch + a * L::kInArrayFloats +
                (land_t * L::kInPitch + sub * kPieceElems) * static_cast<int>(sizeof(TIn)) / 4;
  }
  auto issue_slice = [&](int sl) {
    float* stage = smem + L::kLand + (sl % kStages) * L::kLandStage;
    CpAsync16(stage + land_t * L::kLandPitch + land_q4 * 4, g_src + sl * kSlice, land_ok);
#pragma unroll
    for (int j = 0; j < 3; ++j)
      if (land_q4 + 4 * j < 3 * kPieces)
        CpAsync16(stage + in_dst[j], in_src[j] + sl * kSlice, land_ok);
    CpAsyncCommit();
  };
  issue_slice(0);
  issue_slice(1);

  // Aqk above the diagonal tiles is zero (phase 2 reads whole rows). Thread tid: tile column
  // tid % 16 of rows tid / 16 + 16 r.
  const int64_t tok_step = static_cast<int64_t>(num_v_heads) * kWsRow;  // workspace row stride
  {
    constexpr int kRowsPerPass = kThreads / kTiles;
    const int j4 = tid % kTiles, t0 = tid / kTiles;
    TWs* p = ws_row(t0) + kOffA + 4 * j4;
#pragma unroll
    for (int r = 0; r < kC / kRowsPerPass; ++r) {
      const int t = t0 + r * kRowsPerPass;
      if (t < len && j4 > t / 4) Store4<TWs, kRound>(p, 0.f, 0.f, 0.f, 0.f);
      p += kRowsPerPass * tok_step;
    }
  }

  // Accumulation roles: threads 0..119 one off-diagonal tile (R, J) each, over all channels;
  // warp 4 the 16 diagonal tiles, two lanes per tile (half of each slice's channels each).
  int tile_r = 0, tile_j = 0;
  if (tid < kOffDiagTiles) {
    tile_r = 1;
    while ((tile_r + 1) * tile_r / 2 <= tid) ++tile_r;
    tile_j = tid - tile_r * (tile_r - 1) / 2;
  } else if (tid >= 128 && tid < 160) {
    tile_r = (tid - 128) % kTiles;
  }
  const int diag_half = (tid - 128) / kTiles;
  float tacc[16], aacc[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) tacc[i] = aacc[i] = 0.f;

  // Precompute roles: channel pc of the slice, tokens 4 ph .. 4 ph + 3.
  const int pc = tid % kSlice, ph = tid / kSlice;
  TWs* const pre_row = ws_row(4 * ph);  // token 4 ph
  float* der = smem + L::kDer;
  float* es = smem + L::kE;
  float* tot = smem + L::kTot;

  for (int sl = 0; sl < kSlices; ++sl) {
    if (sl + 1 < kSlices) {
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    // --- Precompute: local scan of 4 tokens, then the prefix over the 16 groups.
    const float* land = smem + L::kLand + (sl % kStages) * L::kLandStage;
    const TIn* land_in = reinterpret_cast<const TIn*>(land + kC * L::kLandPitch);
    constexpr int kInArray = kC * L::kInPitch;  // elements
    float gl[4], qv[4], kv[4], bk[4];
    {
      float run = 0.f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        run += land[(4 * ph + i) * L::kLandPitch + pc] * kLog2e;
        gl[i] = run;
        const int o = (4 * ph + i) * L::kInPitch + pc;
        qv[i] = ToFloat(land_in[o]);
        kv[i] = ToFloat(land_in[kInArray + o]);
        bk[i] = ToFloat(land_in[2 * kInArray + o]) * kv[i];
      }
      tot[ph * kSlice + pc] = run;
    }
    __syncthreads();
    {
      float pre = 0.f, all = 0.f;
#pragma unroll
      for (int h = 0; h < kTiles; ++h) {
        const float x = tot[h * kSlice + pc];
        pre += h < ph ? x : 0.f;
        all += x;
      }
      float G[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) G[i] = pre + gl[i];
      const float g0 = G[0], g3 = G[3];
      float qf[4], bf[4], kc[4];
      const int ch = sl * kSlice + pc;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int t = 4 * ph + i;
        const float rf = Ex2(fminf(G[i] - g0, 0.f));
        const float cf = Ex2(fminf(g3 - G[i], 0.f));
        qf[i] = qv[i] * rf;
        bf[i] = bk[i] * rf;
        kc[i] = kv[i] * cf;
        const float eg = Ex2(G[i]);
        es[t * kEP + ch] = bk[i] * eg;
        if (t < len) {
          TWs* row = pre_row + i * tok_step;
          row[kOffQg + ch] = Stored<TWs, kRound>(qv[i] * eg);
          row[kOffKt + ch] = Stored<TWs, kRound>(kv[i] * Ex2(all - G[i]));
        }
      }
      float* d = der + pc * kDP + 4 * ph;
      *reinterpret_cast<float4*>(d + kQf * kDerived) = make_float4(qf[0], qf[1], qf[2], qf[3]);
      *reinterpret_cast<float4*>(d + kBf * kDerived) = make_float4(bf[0], bf[1], bf[2], bf[3]);
      *reinterpret_cast<float4*>(d + kKc * kDerived) = make_float4(kc[0], kc[1], kc[2], kc[3]);
      *reinterpret_cast<float4*>(d + kG2 * kDerived) = make_float4(G[0], G[1], G[2], G[3]);
      *reinterpret_cast<float4*>(d + kQr * kDerived) = make_float4(qv[0], qv[1], qv[2], qv[3]);
      *reinterpret_cast<float4*>(d + kBKr * kDerived) = make_float4(bk[0], bk[1], bk[2], bk[3]);
      *reinterpret_cast<float4*>(d + kKr * kDerived) = make_float4(kv[0], kv[1], kv[2], kv[3]);
      if (ph == 0) {
        gammas[(ChunkSlot(cu, s, c) * num_v_heads + hv) * kDk + ch] = Ex2(all);
      }
    }
    __syncthreads();
    if (sl + kStages < kSlices) issue_slice(sl + kStages);

    // --- Accumulate T and Aqk over this slice's channels.
    if (tid < kOffDiagTiles) {
      const float* qf_p = der + kQf * kDerived + 4 * tile_r;
      const float* bf_p = der + kBf * kDerived + 4 * tile_r;
      const float* kc_p = der + kKc * kDerived + 4 * tile_j;
      const float* gr_p = der + kG2 * kDerived + 4 * tile_r;
      const float* gj_p = der + kG2 * kDerived + 4 * tile_j + 3;
#pragma unroll 4
      for (int cc = 0; cc < kSlice; ++cc) {
        const float4 qf = *reinterpret_cast<const float4*>(qf_p + cc * kDP);
        const float4 bf = *reinterpret_cast<const float4*>(bf_p + cc * kDP);
        const float4 kc = *reinterpret_cast<const float4*>(kc_p + cc * kDP);
        const float dm = Ex2(fminf(gr_p[cc * kDP] - gj_p[cc * kDP], 0.f));
        const float rq[4] = {qf.x, qf.y, qf.z, qf.w};
        const float rb[4] = {bf.x, bf.y, bf.z, bf.w};
        const float ck[4] = {kc.x * dm, kc.y * dm, kc.z * dm, kc.w * dm};
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            tacc[a * 4 + e] = fmaf(rb[a], ck[e], tacc[a * 4 + e]);
            aacc[a * 4 + e] = fmaf(rq[a], ck[e], aacc[a * 4 + e]);
          }
      }
    } else if (tid >= 128 && tid < 160) {
      const int o = 4 * tile_r;
#pragma unroll 2
      for (int cc = diag_half * (kSlice / 2); cc < (diag_half + 1) * (kSlice / 2); ++cc) {
        const float4 g4 = *reinterpret_cast<const float4*>(der + kG2 * kDerived + cc * kDP + o);
        const float4 q4 = *reinterpret_cast<const float4*>(der + kQr * kDerived + cc * kDP + o);
        const float4 b4 = *reinterpret_cast<const float4*>(der + kBKr * kDerived + cc * kDP + o);
        const float4 k4 = *reinterpret_cast<const float4*>(der + kKr * kDerived + cc * kDP + o);
        const float gg[4] = {g4.x, g4.y, g4.z, g4.w};
        const float rq[4] = {q4.x, q4.y, q4.z, q4.w};
        const float rb[4] = {b4.x, b4.y, b4.z, b4.w};
        const float rk[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
        for (int a = 0; a < 4; ++a) {
#pragma unroll
          for (int e = 0; e < a; ++e) {
            const float x = rk[e] * Ex2(fminf(gg[a] - gg[e], 0.f));
            tacc[a * 4 + e] = fmaf(rb[a], x, tacc[a * 4 + e]);
            aacc[a * 4 + e] = fmaf(rq[a], x, aacc[a * 4 + e]);
          }
          aacc[a * 5] = fmaf(rq[a], rk[a], aacc[a * 5]);
        }
      }
    }
  }

  // T into shared memory (over the landing stages, free now), Aqk rows to the workspace.
  float* ts = smem + L::kLand;
  if (tid < kOffDiagTiles) {
    TWs* arow = ws_row(4 * tile_r) + kOffA + 4 * tile_j;
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int t = 4 * tile_r + a;
      *reinterpret_cast<float4*>(ts + t * kTP + 4 * tile_j) =
          make_float4(tacc[a * 4], tacc[a * 4 + 1], tacc[a * 4 + 2], tacc[a * 4 + 3]);
      if (t < len)
        Store4<TWs, kRound>(arow, aacc[a * 4], aacc[a * 4 + 1], aacc[a * 4 + 2], aacc[a * 4 + 3]);
      arow += tok_step;
    }
  } else if (tid >= 128 && tid < 160) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      tacc[i] += __shfl_xor_sync(0xffffffffu, tacc[i], kTiles);
      aacc[i] += __shfl_xor_sync(0xffffffffu, aacc[i], kTiles);
    }
    if (diag_half == 0) {
      TWs* arow = ws_row(4 * tile_r) + kOffA + 4 * tile_r;
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const int t = 4 * tile_r + a;
        float tr[4], ar[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          tr[e] = e < a ? tacc[a * 4 + e] : 0.f;
          ar[e] = e <= a ? aacc[a * 4 + e] : 0.f;
        }
        *reinterpret_cast<float4*>(ts + t * kTP + 4 * tile_r) =
            make_float4(tr[0], tr[1], tr[2], tr[3]);
        if (t < len) Store4<TWs, kRound>(arow, ar[0], ar[1], ar[2], ar[3]);
        arow += tok_step;
      }
    }
  }

  // Z = w v (rows >= len zero): warp w loads rows w + 8j as float4s, all loads issued before the
  // barrier that frees the operand arrays Z goes over.
  constexpr int kZRows = kC / (kThreads / 32);  // rows per warp
  float4 wz[kZRows], vz[kZRows];
  {
    const int r0 = tid / 32, c4 = (tid % 32) * 4;
    const TIn* wp = in.w + (start + r0) * in.w_stride + hv * kDv + c4;
    const TIn* vp = in.v + (start + r0) * in.v_stride + hv * kDv + c4;
    const int64_t wstep = (kThreads / 32) * in.w_stride, vstep = (kThreads / 32) * in.v_stride;
#pragma unroll
    for (int j = 0; j < kZRows; ++j) {
      const bool ok = r0 + (kThreads / 32) * j < len;
      wz[j] = ok ? Load4(wp) : make_float4(0.f, 0.f, 0.f, 0.f);
      vz[j] = ok ? Load4(vp) : make_float4(0.f, 0.f, 0.f, 0.f);
      wp += wstep;
      vp += vstep;
    }
  }
  __syncthreads();  // every thread is past the slice loop: the operand arrays are free
  float* zs = smem + L::kZ;
  {
    const int r0 = tid / 32, c4 = (tid % 32) * 4;
#pragma unroll
    for (int j = 0; j < kZRows; ++j)
      *reinterpret_cast<float4*>(zs + (r0 + (kThreads / 32) * j) * kEP + c4) =
          make_float4(wz[j].x * vz[j].x, wz[j].y * vz[j].y, wz[j].z * vz[j].z, wz[j].w * vz[j].w);
  }
  __syncthreads();

  if constexpr (std::is_same_v<TWs, __nv_bfloat16>) {
    SolveByInverse(ts, es, zs, smem + L::kM, ws_row(0), tok_step, len, tid);
  } else {
    // Right-hand side: column tid of E, or column tid - dk of Z.
    float x[kC];
    {
      const float* rhs = tid < kDk ? es + tid : zs + (tid - kDk);
#pragma unroll
      for (int t = 0; t < kC; ++t) x[t] = rhs[t * kEP];
    }

    // Forward substitution (I + T) X = RHS; T rows are read as broadcasts.
#pragma unroll
    for (int t = 1; t < kC; ++t) {
      const float* tr = ts + t * kTP;
      float a0 = x[t], a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma unroll
      for (int j = 0; j + 4 <= t; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(tr + j);
        a0 = fmaf(-v.x, x[j], a0);
        a1 = fmaf(-v.y, x[j + 1], a1);
        a2 = fmaf(-v.z, x[j + 2], a2);
        a3 = fmaf(-v.w, x[j + 3], a3);
      }
#pragma unroll
      for (int j = t & ~3; j < t; ++j) a0 = fmaf(-tr[j], x[j], a0);
      x[t] = (a0 + a1) + (a2 + a3);
    }
    // The row pointer advances by the workspace row stride (no per-token address products).
    TWs* out = ws_row(0) + (tid < kDk ? kOffY + tid : kOffU + (tid - kDk));
#pragma unroll
    for (int t = 0; t < kC; ++t) {
      if (t < len) *out = Stored<TWs, kRound>(x[t]);
      out += tok_step;
    }
  }
  if (ready != nullptr) {  // the chunk's rows and gamma are complete (release, GPU scope)
    __syncthreads();
    if (tid == 0) {
      __threadfence();
      StoreRelease(ready + ChunkSlot(cu, s, c) * num_v_heads + hv, 1);
    }
  }
}

template <typename TIn, typename TWs, bool kRound>
absl::Status LaunchPhase1As(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                            unsigned* ready, cudaStream_t stream) {
  const int64_t blocks_x = (a.max_seq_len + int64_t{kC} - 1) / kC * shape.num_v_heads;
  if (blocks_x > 0x7fffffff)
    return absl::InvalidArgumentError("gdn2 prefill: max_seq_len too large for phase 1's grid");
  constexpr int kSmemBytes = Smem<TIn>::kFloats * 4;
  auto* kernel = Gdn2ChunkPhase1V3Kernel<TIn, TWs, kRound>;
  DS_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  const Inputs<TIn> in{static_cast<const TIn*>(a.q), static_cast<const TIn*>(a.k), a.g,
                       static_cast<const TIn*>(a.b), static_cast<const TIn*>(a.v),
                       static_cast<const TIn*>(a.w), a.q_stride, a.k_stride, a.g_stride,
                       a.b_stride, a.v_stride, a.w_stride};
  kernel<<<dim3(static_cast<unsigned>(blocks_x), a.num_seqs), kThreads, kSmemBytes, stream>>>(
      shape.num_v_heads / shape.num_heads, a.cu_seqlens, in, shape.num_v_heads,
      reinterpret_cast<TWs*>(a.workspace),
      a.workspace + GammaBase(a.total_tokens, shape.num_v_heads, a.precision), ready);
  return LaunchStatus("Gdn2ChunkPhase1V3Kernel");
}

}  // namespace

absl::Status LaunchPhase1(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                          unsigned* ready, cudaStream_t stream) {
  using bf16 = __nv_bfloat16;
  const bool in_bf16 = a.input_type == DType::kBF16;
  switch (a.precision) {
    case Gdn2PrefillPrecision::kTf32:
      return in_bf16 ? LaunchPhase1As<bf16, float, true>(shape, a, ready, stream)
                     : LaunchPhase1As<float, float, true>(shape, a, ready, stream);
    case Gdn2PrefillPrecision::kBf16:
      return in_bf16 ? LaunchPhase1As<bf16, bf16, false>(shape, a, ready, stream)
                     : LaunchPhase1As<float, bf16, false>(shape, a, ready, stream);
    default:
      return in_bf16 ? LaunchPhase1As<bf16, float, false>(shape, a, ready, stream)
                     : LaunchPhase1As<float, float, false>(shape, a, ready, stream);
  }
}

}  // namespace deltaserve::cuda::gdn2_chunk
