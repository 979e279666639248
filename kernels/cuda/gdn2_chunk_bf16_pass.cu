// Phase 2 of the chunked GDN-2 prefill for Gdn2PrefillPrecision::kBf16 (see gdn2_chunk_phases.h
// for the contract): one pass per (64 state columns, value head, sequence), sequential over the
// sequence's chunks, that computes both the state recurrence and the outputs with bf16
// warpgroup products (wgmma, fp32 accumulation; wgmma.cuh) on phase 1's bf16 workspace rows. It
// needs no extra workspace: outputs are stored as each chunk is done, the state is read from the
// slot at the start and written back after the last chunk (no chunk-start states).
//
// The block is one warpgroup. It holds its 64 state columns j over all dk rows transposed
// (S^T, 64 x dk) in fp32 accumulator fragments, so every product of a chunk step has its left
// operand in registers:
//   P^T = S^T Y^T,  O^T = S^T Qg^T      A: S^T rounded to bf16;  B: Y, Qg rows (K-major)
//   U^T = U'^T - P^T                    fp32, then rounded to bf16 A fragments
//   O^T += U^T Aqk^T                    B: Aqk rows (K-major)
//   S^T = S^T diag(gamma) + U^T Ktail   B: Ktail rows (N-major)
// The D fragments of two adjacent n8 tiles are the A fragment of one k16 step, so U^T and S^T
// pass from one product to the next without shared memory. The chunk's tiles (Y, Qg, Ktail, Aqk
// and the block's U' columns, 64 rows of 64 columns each) are tensor copies (TMA) in the 128-byte
// swizzle the products read, issued by one thread into the next stage while the current chunk
// computes. Rows past the sequence's end hold other tokens' values (or zeros past the batch):
// the chunk's U^T is zeroed there before any product that could carry them, and their outputs
// are not stored. With phase 1 running beside it, thread 0 waits for a chunk's ready word
// before it issues the chunk's copies.
//
// Accuracy: every product operand is bf16 (2^-9 relative), the state and every sum are fp32;
// the state is rounded only where it is a product operand, never where it is kept.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/gdn2_chunk_phases.h"
#include "kernels/cuda/mma_bf16.cuh"
#include "kernels/cuda/ready_word.cuh"
#include "kernels/cuda/status_util.h"
#include "kernels/cuda/wgmma.cuh"

namespace deltaserve::cuda::gdn2_chunk {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 128;  // one warpgroup
constexpr int kCols = 64;      // state columns per block
constexpr int kStages = 2;     // chunks in flight: kStages - 1 ahead of the one computed

// One stage in shared memory (byte offsets, 1 KB aligned): the swizzled 64 x 64 tiles Y lo / hi,
// Qg lo / hi, Ktail lo / hi (dk halves), Aqk, U' (the block's columns), then gamma f32 [dk].
// After the stages, one mbarrier per stage.
constexpr int kTile = kC * 128;  // bytes of one swizzled tile of C rows
constexpr int kTiles = 8;
constexpr int kOffYs = 0;
constexpr int kOffQs = 2 * kTile;
constexpr int kOffKs = 4 * kTile;
constexpr int kOffAs = 6 * kTile;
constexpr int kOffUs = 7 * kTile;
constexpr int kOffGs = kTiles * kTile;
constexpr int kStageTx = kTiles * kTile + kDk * 4;  // bytes each chunk's copies deliver
constexpr int kStageBytes = (kStageTx + 1023) / 1024 * 1024;
constexpr int kSmemBytes = kStages * kStageBytes + 8 * kStages + 1024;  // + base alignment
// Workspace column of each tile's first element (U': plus the block's first column).
__constant__ int kTileColumn[kTiles] = {kOffY,  kOffY + 64,  kOffQg, kOffQg + 64,
                                        kOffKt, kOffKt + 64, kOffA,  kOffU};

// Spins until phase 1 has published the chunk at `word` (acquire, GPU scope), then orders the
// tensor copies (async proxy) after that.
__device__ __forceinline__ void WaitReady(const unsigned* word) {
  while (LoadAcquire(word) == 0) __nanosleep(200);
  asm volatile("fence.proxy.async.global;\n" ::: "memory");
}

// Byte offset of k16 step k of a K-major operand of K = dk (two swizzled tiles of 64 columns).
__host__ __device__ constexpr uint32_t TileStep(int k) { return (k / 4) * kTile + 32 * (k % 4); }

// One 64 x 64 box of the workspace rows (tensor map: columns, value heads, tokens) into the
// swizzled tile at shared address `dst`, counted on `bar`.
__device__ __forceinline__ void TensorLoad(uint32_t dst, const CUtensorMap* map, int col, int hv,
                                           int token, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(hv), "r"(token), "r"(bar)
      : "memory");
}

using mma::PackBf16;
using mma::UnpackBf16;

// Four 8x8 b16 matrices, transposed; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// The A fragment of k16 step k from the D fragments of n8 tiles 2k and 2k + 1.
template <int N>
__device__ __forceinline__ void AFromD(uint32_t (&a)[4], const float (&d)[N], int k) {
  a[0] = PackBf16(d[8 * k], d[8 * k + 1]);
  a[1] = PackBf16(d[8 * k + 2], d[8 * k + 3]);
  a[2] = PackBf16(d[8 * k + 4], d[8 * k + 5]);
  a[3] = PackBf16(d[8 * k + 6], d[8 * k + 7]);
}

__global__ void __launch_bounds__(kThreads, 1) Bf16PassKernel(
    const __grid_constant__ CUtensorMap rows, const int32_t* __restrict__ cu,
    const int32_t* __restrict__ slots, char* __restrict__ pool, int64_t slot_stride,
    int64_t recurrent_offset, int num_v_heads, const float* __restrict__ gammas,
    const unsigned* __restrict__ ready, float* __restrict__ o, int64_t o_stride) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t smem = (SharedAddr(smem_raw) + 1023) & ~1023u;
  const unsigned char* smem_ptr = smem_raw + (smem - SharedAddr(smem_raw));
  const int cb = blockIdx.x, hv = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int n0 = cb * kCols;      // the block's first state column
  const int j0 = n0 + 16 * warp;  // the warp's
  const int seq_start = cu[s], seq_end = cu[s + 1];
  const int nchunks = (seq_end - seq_start + kC - 1) / kC;
  if (nchunks == 0) return;

  // Before the dependency wait only what phase 1 does not write is read: the slot's state.
  // sacc (D fragments of S^T): rows j0 + g (+8), columns (state rows) 8n + 2t (+1).
  float* state = reinterpret_cast<float*>(pool + static_cast<int64_t>(slots[s]) * slot_stride +
                                          recurrent_offset) +
                 static_cast<int64_t>(hv) * kDk * kDv + j0 + g;
  float sacc[kDk / 2];
#pragma unroll
  for (int n = 0; n < kDk / 8; ++n) {
    const float* p = state + (8 * n + 2 * t4) * kDv;
    sacc[4 * n] = p[0];
    sacc[4 * n + 1] = p[kDv];
    sacc[4 * n + 2] = p[8];
    sacc[4 * n + 3] = p[kDv + 8];
  }
  // Phase 1's workspace is complete after this (when launched as its programmatic dependent;
  // otherwise this returns at once).
  cudaGridDependencySynchronize();

  const float* gamma =
      gammas + ((static_cast<int64_t>(s) + seq_start / kC) * num_v_heads + hv) * kDk;
  const int64_t gamma_step = static_cast<int64_t>(num_v_heads) * kDk;  // per chunk slot
  const uint32_t bars = smem + kStages * kStageBytes;
  if (tid == 0) {
#pragma unroll
    for (int i = 0; i < kStages; ++i) MbarInit(bars + 8 * i);
  }
  __syncthreads();
  // Chunk c goes to stage c % kStages, completing phase c / kStages of its mbarrier. Thread 0
  // issues; a stage is refilled only after a block barrier past its last readers.
  const unsigned* chunk_ready =
      ready == nullptr ? nullptr
                       : ready + (static_cast<int64_t>(s) + seq_start / kC) * num_v_heads + hv;
  auto issue = [&](int c) {
    if (c >= nchunks) return;
    if (chunk_ready != nullptr) WaitReady(chunk_ready + c * num_v_heads);
    const uint32_t st = smem + (c % kStages) * kStageBytes, bar = bars + 8 * (c % kStages);
    MbarArriveExpectTx(bar, kStageTx);
#pragma unroll
    for (int i = 0; i < kTiles; ++i)
      TensorLoad(st + i * kTile, &rows, kTileColumn[i] + (i == kTiles - 1 ? n0 : 0), hv,
                 seq_start + c * kC, bar);
    BulkCopy(st + kOffGs, gamma + c * gamma_step, kDk * 4, bar);
  };
  if (tid == 0) {
#pragma unroll
    for (int c = 0; c < kStages - 1; ++c) issue(c);
  }

  // ldmatrix.trans of U' [token][column]: matrices (token tile 2p + l / 16, column half
  // (l / 8) % 2) of the warp's 16 columns, i.e. 16-byte piece ld_piece of row 16p + ld_row.
  const int ld_row = 8 * (lane >> 4) + (lane & 7), ld_piece = 2 * warp + ((lane >> 3) & 1);
  float* out = o + static_cast<int64_t>(seq_start + 2 * t4) * o_stride +
               static_cast<int64_t>(hv) * kDv + j0 + g;

  for (int c = 0; c < nchunks; ++c) {
    const uint32_t st = smem + (c % kStages) * kStageBytes;
    const unsigned char* st_ptr = smem_ptr + (c % kStages) * kStageBytes;
    const int len = min(kC, seq_end - seq_start - c * kC);
    __syncthreads();  // chunk c-1's readers are done: its stage may be refilled
    if (tid == 0) {
      FenceProxyAsync();
      issue(c + kStages - 1);
    }
    MbarWaitParity(bars + 8 * (c % kStages), (c / kStages) & 1);

    // P^T = S^T Y^T and O^T = S^T Qg^T over the dk k-steps (two commit groups: U needs only P).
    float pacc[kC / 2], oacc[kC / 2];
    uint32_t sa[kDk / 16][4];
#pragma unroll
    for (int k = 0; k < kDk / 16; ++k) AFromD(sa[k], sacc, k);
    WgmmaFence();
#pragma unroll
    for (int k = 0; k < kDk / 16; ++k)
      WgmmaM64N64K16<0>(pacc, sa[k], SmemDesc128(st + kOffYs + TileStep(k), 16), k > 0);
    WgmmaCommit();
#pragma unroll
    for (int k = 0; k < kDk / 16; ++k)
      WgmmaM64N64K16<0>(oacc, sa[k], SmemDesc128(st + kOffQs + TileStep(k), 16), k > 0);
    WgmmaCommit();

    // S^T diag(gamma), while those run (they read only the bf16 copy sa).
    const float* gam = reinterpret_cast<const float*>(st_ptr + kOffGs);
#pragma unroll
    for (int n = 0; n < kDk / 8; ++n) {
      const float2 gm = *reinterpret_cast<const float2*>(gam + 8 * n + 2 * t4);
      sacc[4 * n] *= gm.x;
      sacc[4 * n + 1] *= gm.y;
      sacc[4 * n + 2] *= gm.x;
      sacc[4 * n + 3] *= gm.y;
    }

    // U^T = U'^T - P^T (U' read transposed into D layout), then as A fragments per token k-step.
    WgmmaWait<1>();
    FenceOperands(pacc);
    uint32_t ua[kC / 16][4];
#pragma unroll
    for (int p = 0; p < kC / 16; ++p) {
      uint32_t u[4];
      Ldsm4T(u, st + kOffUs + Swizzle128(16 * p + ld_row, ld_piece));
      // u[0] / u[1]: token tile 2p, columns g / g + 8; u[2] / u[3]: tile 2p + 1.
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float2 lo = UnpackBf16(u[2 * h]), hi = UnpackBf16(u[2 * h + 1]);
        float* x = pacc + 4 * (2 * p + h);
        x[0] = lo.x - x[0];
        x[1] = lo.y - x[1];
        x[2] = hi.x - x[2];
        x[3] = hi.y - x[3];
        if (len < kC) {  // tokens past the sequence's end
          const int t = 16 * p + 8 * h + 2 * t4;
          if (t >= len) x[0] = x[2] = 0.f;
          if (t + 1 >= len) x[1] = x[3] = 0.f;
        }
      }
      AFromD(ua[p], pacc, p);
    }

    // O^T += U^T Aqk^T, then S^T += U^T Ktail (the outputs are stored while S's products run).
    WgmmaWait<0>();
    FenceOperands(oacc);
    WgmmaFence();
#pragma unroll
    for (int k = 0; k < kC / 16; ++k)
      WgmmaM64N64K16<0>(oacc, ua[k], SmemDesc128(st + kOffAs + 32 * k, 16), true);
    WgmmaCommit();
#pragma unroll
    for (int k = 0; k < kC / 16; ++k)
      WgmmaM64N128K16<1>(sacc, ua[k], SmemDesc128(st + kOffKs + 2048 * k, kTile), true);
    WgmmaCommit();
    WgmmaWait<1>();
    FenceOperands(oacc);
#pragma unroll
    for (int n = 0; n < kC / 8; ++n) {
      const int t = 8 * n + 2 * t4;
      float* p = out + static_cast<int64_t>(8 * n) * o_stride;
      if (t < len) {
        p[0] = oacc[4 * n];
        p[8] = oacc[4 * n + 2];
      }
      if (t + 1 < len) {
        p[o_stride] = oacc[4 * n + 1];
        p[o_stride + 8] = oacc[4 * n + 3];
      }
    }
    out += kC * o_stride;
    WgmmaWait<0>();
    FenceOperands(sacc);
  }

#pragma unroll
  for (int n = 0; n < kDk / 8; ++n) {
    float* p = state + (8 * n + 2 * t4) * kDv;
    p[0] = sacc[4 * n];
    p[kDv] = sacc[4 * n + 1];
    p[8] = sacc[4 * n + 2];
    p[kDv + 8] = sacc[4 * n + 3];
  }
}

// The tensor map of the bf16 workspace rows: 64 x 64 boxes over (columns, value heads, tokens),
// 128-byte swizzle.
absl::Status RowsTensorMap(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                           CUtensorMap* map) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (encode == nullptr)
    return absl::InternalError("gdn2 prefill: the driver has no cuTensorMapEncodeTiled");
  const cuuint64_t dims[3] = {kWsRow, static_cast<cuuint64_t>(shape.num_v_heads),
                              static_cast<cuuint64_t>(a.total_tokens)};
  const cuuint64_t strides[2] = {kWsRow * 2,
                                 static_cast<cuuint64_t>(shape.num_v_heads) * kWsRow * 2};
  const cuuint32_t box[3] = {64, 1, kC};
  const cuuint32_t steps[3] = {1, 1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, a.workspace, dims, strides,
                            box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return absl::InternalError(
        absl::StrCat("gdn2 prefill: cuTensorMapEncodeTiled failed (", static_cast<int>(r), ")"));
  return absl::OkStatus();
}

}  // namespace

int64_t Phase2Bf16Blocks(const Gdn2PrefillShape& shape, int num_seqs) {
  return int64_t{kDv / kCols} * shape.num_v_heads * num_seqs;
}

absl::Status LaunchPhase2Bf16(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                              bool after_phase1, const unsigned* ready, cudaStream_t stream) {
  CUtensorMap map;
  if (absl::Status st = RowsTensorMap(shape, a, &map); !st.ok()) return st;
  DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      Bf16PassKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  // After phase 1, a programmatic dependent of it: its blocks load the slot states while phase
  // 1's last blocks finish. (Otherwise a plain launch: the kernel before might write them.)
  return LaunchKernel("Bf16PassKernel", Bf16PassKernel,
                      dim3(kDv / kCols, shape.num_v_heads, a.num_seqs), dim3(kThreads),
                      kSmemBytes, stream, after_phase1, map, a.cu_seqlens, a.slots,
                      static_cast<char*>(a.pool), a.slot_stride_bytes, a.recurrent_offset,
                      shape.num_v_heads,
                      a.workspace + GammaBase(a.total_tokens, shape.num_v_heads, a.precision),
                      ready, a.o,
                      a.o_stride);
}

}  // namespace deltaserve::cuda::gdn2_chunk
