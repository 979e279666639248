// Benchmark of state round-trip access patterns: how close a kernel that reads each fp32
// [128, 128] decode state tile of a slot pool (into shared memory or registers) and writes it
// back in place can get to the device-to-device copy bandwidth, depending on how the tiles are
// cut into blocks and copies, and where the slots lie. No arithmetic; the questions are the
// memory system's. One layer, H = 16 heads, slots in a random order unless a pattern says
// otherwise, sets of slots rotated so that L2 cannot hold the state (as in gdn2_decode_bench),
// evict_last fetches from 128 MiB of state (the streamed recurrence's threshold when these
// patterns were measured; it fetches so from 64 MiB now, with write-back stores).
//
// Patterns (128 threads per block unless noted):
//   tile             one block per tile: 4 bulk copies of 16 KiB, written back once all landed
//                    (the streamed recurrence's pattern; its reductions over dk need every row
//                    of a column before any of the column is written)
//   tile_rows_early  the same, each 16 KiB row piece written back as soon as it lands (a copy's
//                    freedom, which the recurrence does not have)
//   tile_cols_early  one block per tile, 4 groups of 32 columns (a bulk copy per row and group,
//                    128 bytes), each group written back as soon as it lands (the recurrence
//                    could do this: a column needs only its own rows)
//   halves           one block per 64 columns of a tile (a bulk copy per row, 256 bytes)
//   quarters         one block per 32 columns (a bulk copy per row, 128 bytes)
//   halves_tmap      halves fetched as one tensor-map box each
//   regs_tile        one block of 256 threads per tile, held in registers (16-byte loads), a
//                    reduction over its rows (as the recurrence needs), then written back
//   regs_halves      the same per 64 columns (128 threads)
//   regs_quarters    the same per 32 columns (128 threads): small units, so the last wave of
//                    a launch is short
//   regs_quarters_nored  regs_quarters without the reduction: each thread writes its pieces
//                    once all of its own loads landed (a copy's freedom)
//   rows{8,16,32,64} one block of 128 threads per ROWS contiguous rows of a tile (ROWS x 512
//                    bytes in one piece), in registers, each row summed by its warp and written
//                    back: the pattern of a state stored transposed ([dv, dk]), where the
//                    recurrence's reductions run along a row; rows16_{8,4}sm: at most 8 / 4
//                    blocks per SM
//   stream_rows{16,32}, stream_head  one block per 16 / 32 / 128 rows of a tile in the pool's
//                    own layout, 4 / 8 / 16 rows per warp in registers, each row written back as
//                    soon as it landed, the column sums accumulated in-lane and summed over the
//                    block (a part of a head writes its 512-byte sums to global memory): the
//                    pattern of a state kept as a matrix plus one pending rank-1 term, whose
//                    rows need no reduction before their write
//   flat_rows8       one block of 256 threads per 8 rows (4 KiB), one float4 per thread loaded
//                    and stored straight back (the shape of copy_flat_u1, in place through the
//                    slot indices); _sums / _red add the block's column sums, written out / added
//                    into one accumulator per head; _nolookup takes consecutive slots without
//                    reading the slot indices
//   copy_unroll{4,8} one full wave of 256-thread blocks striding over every float4 of the
//                    launch's tiles, each loaded and stored back in place
//   _ident / _sorted the launch's slots consecutive in the pool, rows in slot order (what the
//                    engine's segment-major pool gives a full batch) / the shuffled set sorted
//   tile_2sm         tile with at most 2 blocks per SM
//   tile_bulk_store  tile, the landed tile rewritten in shared memory and stored back by bulk
//                    copies (TMA stores); _ef: under an L2 evict_first policy
//   tile_plain_store tile with plain (write-back) stores instead of streaming ones
//   _el              evict_last fetches at every batch (not only from 128 MiB of state)
// Peers on contiguous memory, the same bytes per launch: memcpy_graph (cudaMemcpyAsync graph
// nodes), copy_wave_u{1,2,4,8} (a copy kernel of one full wave of blocks, UNROLL float4 per
// thread and step), copy_flat_u{1,4} (a block per 256 x UNROLL float4; _plain: plain stores,
// _in_place: source = destination).
// The pool is filled with small pseudo-random values (--zeros: zeros; measured the same).
// The pool holds one layer per slot (1 MiB of state + room for histories); a second argument
// gives each slot that many MiB instead, as the engine's slot-major pool does (every layer of a
// slot together).
// Ratios are against the 1 GiB copy measured at the start of the run.
//
// Usage: state_pattern_bench [out.json [slot MiB]] [--patterns=a,b] [--zeros]
//        (default: every pattern)
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "kernels/cuda/async_copy.cuh"

using namespace deltaserve::bench;
using deltaserve::cuda::BulkCopy;
using deltaserve::cuda::BulkCopyWithPolicy;
using deltaserve::cuda::FenceProxyAsync;
using deltaserve::cuda::L2EvictLastPolicy;
using deltaserve::cuda::MbarArriveExpectTx;
using deltaserve::cuda::MbarInit;
using deltaserve::cuda::MbarWaitParity;
using deltaserve::cuda::SharedAddr;

namespace {

constexpr int kDim = 128;                 // dk = dv
constexpr int kHeads = 16;
constexpr int kThreads = 128;
constexpr int64_t kEvictLastBytes = int64_t{128} << 20;

struct Args {
  const int32_t* slots;
  char* pool;
  int64_t slot_stride;
  int num_slots;
  bool evict_last;
  float scale;  // 0: the reduction of the register patterns is added times zero
  float4* partials;  // column sums of the stream_rows patterns, one float4 per lane and block
  int slot_base;     // FlatRowsPatternKernel<-1>: row y uses slot slot_base + y (no lookup)
};

__device__ __forceinline__ void Copy(uint32_t dst, const void* src, int bytes, uint32_t bar,
                                     bool evict_last) {
  if (evict_last) {
    BulkCopyWithPolicy(dst, src, bytes, bar, L2EvictLastPolicy());
  } else {
    BulkCopy(dst, src, bytes, bar);
  }
}

// One block per (tile, part of COLS columns), GROUPS barriers; group g is written back once it
// has landed. ROW_PIECES: groups are contiguous row ranges (COLS = 128 only), else column ranges
// fetched by one bulk copy per row (a single group of whole rows is fetched in 16 KiB pieces).
template <int COLS, int GROUPS, bool ROW_PIECES>
__global__ void __launch_bounds__(kThreads) BulkPatternKernel(Args a) {
  extern __shared__ __align__(128) unsigned char tile[];
  __shared__ __align__(8) uint64_t bars[GROUPS];
  constexpr int kParts = kDim / COLS;
  constexpr int kGroupCols = ROW_PIECES ? COLS : COLS / GROUPS;
  constexpr int kGroupBytes = kDim * COLS * 4 / GROUPS;
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim + part * COLS;
  const int tid = threadIdx.x;
  if (tid == 0) {
    for (int g = 0; g < GROUPS; ++g) {
      MbarInit(SharedAddr(&bars[g]));
      MbarArriveExpectTx(SharedAddr(&bars[g]), kGroupBytes);
    }
  }
  __syncthreads();
  const uint32_t base = SharedAddr(tile);
  if (ROW_PIECES || kGroupCols == kDim) {
    if (tid == 0) {
      for (int off = 0; off < kDim * kDim * 4; off += 16384)
        Copy(base + off, reinterpret_cast<char*>(state) + off, 16384,
             SharedAddr(&bars[off / kGroupBytes]), a.evict_last);
    }
  } else if (tid < 32) {
    for (int g = 0; g < GROUPS; ++g) {
      for (int r = tid; r < kDim; r += 32)
        Copy(base + g * kGroupBytes + r * kGroupCols * 4, state + r * kDim + g * kGroupCols,
             kGroupCols * 4, SharedAddr(&bars[g]), a.evict_last);
    }
  }
  for (int g = 0; g < GROUPS; ++g) {
    MbarWaitParity(SharedAddr(&bars[g]), 0);
    const float4* in = reinterpret_cast<const float4*>(tile + g * kGroupBytes);
    constexpr int kVecs = kGroupCols / 4;  // float4 per row of the group
#pragma unroll 4
    for (int i = tid; i < kGroupBytes / 16; i += kThreads) {
      float* row = ROW_PIECES ? state + (g * kGroupBytes / 16 + i) / kVecs * kDim
                              : state + (i / kVecs) * kDim + g * kGroupCols;
      __stcs(reinterpret_cast<float4*>(row) + i % kVecs, in[i]);
    }
  }
}

// One block per tile, fetched as `tile` does. STORE_MODE 0: the threads rewrite every element
// of the landed tile in shared memory (as pass 2 of the recurrence would compute it in place)
// and one thread writes the tile back with 4 bulk copies shared -> global of 16 KiB (TMA
// stores); the block ends once the copies have read shared memory. 1: the same under an L2
// evict_first policy. 2: no bulk store, plain (write-back) thread stores instead of streaming
// ones.
template <int STORE_MODE>
__global__ void __launch_bounds__(kThreads) TileStorePatternKernel(Args a) {
  extern __shared__ __align__(128) unsigned char tile[];
  __shared__ __align__(8) uint64_t bar;
  constexpr int kTileBytes = kDim * kDim * 4;
  const int head = blockIdx.x;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim;
  const int tid = threadIdx.x;
  const uint32_t base = SharedAddr(tile), b = SharedAddr(&bar);
  if (tid == 0) {
    MbarInit(b);
    MbarArriveExpectTx(b, kTileBytes);
    for (int off = 0; off < kTileBytes; off += 16384)
      Copy(base + off, reinterpret_cast<char*>(state) + off, 16384, b, a.evict_last);
  }
  __syncthreads();
  MbarWaitParity(b, 0);
  float4* in = reinterpret_cast<float4*>(tile);
  const float c = 1.0f + a.scale;
  if constexpr (STORE_MODE == 2) {
#pragma unroll 4
    for (int i = tid; i < kTileBytes / 16; i += kThreads) {
      const float4 v = in[i];
      reinterpret_cast<float4*>(state)[i] = make_float4(v.x * c, v.y * c, v.z * c, v.w * c);
    }
  } else {
#pragma unroll 4
    for (int i = tid; i < kTileBytes / 16; i += kThreads) {
      const float4 v = in[i];
      in[i] = make_float4(v.x * c, v.y * c, v.z * c, v.w * c);
    }
    FenceProxyAsync();  // this thread's shared-memory writes before the bulk stores read them
    __syncthreads();
    if (tid == 0) {
      uint64_t policy = 0;
      if (STORE_MODE == 1)
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
      for (int off = 0; off < kTileBytes; off += 16384) {
        char* dst = reinterpret_cast<char*>(state) + off;
        if (STORE_MODE == 1) {
          asm volatile("cp.async.bulk.global.shared::cta.bulk_group.L2::cache_hint [%0], [%1], "
                       "%2, %3;\n" ::"l"(dst), "r"(base + off), "n"(16384), "l"(policy)
                       : "memory");
        } else {
          asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst),
                       "r"(base + off), "n"(16384)
                       : "memory");
        }
      }
      asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
      asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    }
  }
}

// One block of THREADS per (tile, part of COLS columns). Each thread loads its float4 pieces
// (rows tid / L + k * rows_per_pass, L = COLS / 4 threads per row) into registers; with REDUCE
// the block sums every column over all rows (shuffles, then shared memory) and adds the sum
// times a.scale to each element before the streaming stores, so no store may precede the last
// load of the block.
template <int COLS, int THREADS, bool REDUCE>
__global__ void __launch_bounds__(THREADS) RegisterPatternKernel(Args a) {
  constexpr int kParts = kDim / COLS, kLanes = COLS / 4, kRowsPerPass = THREADS / kLanes;
  constexpr int kPasses = kDim / kRowsPerPass, kWarps = THREADS / 32;
  __shared__ float4 partial[kWarps][kLanes];
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim + part * COLS;
  const int tid = threadIdx.x, lane = tid % kLanes, row0 = tid / kLanes;
  float4 v[kPasses];
#pragma unroll
  for (int k = 0; k < kPasses; ++k)
    v[k] = *reinterpret_cast<const float4*>(state + (row0 + k * kRowsPerPass) * kDim + lane * 4);
  float4 add = make_float4(0.f, 0.f, 0.f, 0.f);
  if (REDUCE) {
    float4 s = v[0];
#pragma unroll
    for (int k = 1; k < kPasses; ++k) {
      s.x += v[k].x;
      s.y += v[k].y;
      s.z += v[k].z;
      s.w += v[k].w;
    }
#pragma unroll
    for (int off = kLanes; off < 32; off *= 2) {
      s.x += __shfl_xor_sync(0xffffffffu, s.x, off);
      s.y += __shfl_xor_sync(0xffffffffu, s.y, off);
      s.z += __shfl_xor_sync(0xffffffffu, s.z, off);
      s.w += __shfl_xor_sync(0xffffffffu, s.w, off);
    }
    if (tid % 32 < kLanes) partial[tid / 32][lane] = s;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      add.x += partial[w][lane].x * a.scale;
      add.y += partial[w][lane].y * a.scale;
      add.z += partial[w][lane].z * a.scale;
      add.w += partial[w][lane].w * a.scale;
    }
  }
#pragma unroll
  for (int k = 0; k < kPasses; ++k) {
    const float4 o = make_float4(v[k].x + add.x, v[k].y + add.y, v[k].z + add.z, v[k].w + add.w);
    __stcs(reinterpret_cast<float4*>(state + (row0 + k * kRowsPerPass) * kDim + lane * 4), o);
  }
}

// For a grid of one block per (rows_per_block rows of a tile, batch row), warp w owning rows
// w * rows_per_warp + k of its block's part: the first of this thread's warp's rows at its lane's
// float4, or nullptr if the row's slot is out of range. The slot is the batch row's entry of
// a.slots unless given.
__device__ __forceinline__ float* WarpRows(Args a, int rows_per_block, int rows_per_warp,
                                           int slot = -1) {
  const int parts = kDim / rows_per_block;
  const int head = blockIdx.x / parts, part = blockIdx.x % parts;
  if (slot < 0) slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return nullptr;
  return reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
         (int64_t{head} * kDim + part * rows_per_block + threadIdx.x / 32 * rows_per_warp) * kDim +
         threadIdx.x % 32 * 4;
}

// One block of 128 threads per ROWS contiguous rows of a tile; warp w holds rows
// w * ROWS / 4 + k, a float4 of each per lane, sums each row over the warp and adds the sum times
// a.scale before the streaming stores.
template <int ROWS>
__global__ void __launch_bounds__(kThreads) RowPatternKernel(Args a) {
  constexpr int kRowsPerWarp = ROWS / 4;
  float* rows = WarpRows(a, ROWS, kRowsPerWarp);
  if (rows == nullptr) return;
  float4 v[kRowsPerWarp];
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) v[k] = *reinterpret_cast<const float4*>(rows + k * kDim);
#pragma unroll
  for (int k = 0; k < kRowsPerWarp; ++k) {
    float s = v[k].x + v[k].y + v[k].z + v[k].w;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    s *= a.scale;
    __stcs(reinterpret_cast<float4*>(rows + k * kDim),
           make_float4(v[k].x + s, v[k].y + s, v[k].z + s, v[k].w + s));
  }
}

// One block of ROWS / RPW warps per ROWS rows of a tile, RPW rows per warp (a float4 of each
// per lane, all loads issued first). Each row is written back as soon as its own load has
// landed, and the block sums every column over its rows (in-lane, then shared memory): the
// pattern of a single-pass update whose reductions over dk are not needed before a row's write
// (the state kept as a matrix plus one pending rank-1 term). A block of fewer than 128 rows
// writes its column sums (512 bytes) to a.partials.
template <int ROWS, int RPW>
__global__ void __launch_bounds__(ROWS / RPW * 32) StreamRowsPatternKernel(Args a) {
  constexpr int kParts = kDim / ROWS, kWarps = ROWS / RPW;
  __shared__ float4 partial[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* rows = WarpRows(a, ROWS, RPW);
  if (rows == nullptr) return;
  float4 v[RPW];
#pragma unroll
  for (int k = 0; k < RPW; ++k) v[k] = *reinterpret_cast<const float4*>(rows + k * kDim);
  float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int k = 0; k < RPW; ++k) {
    const float c = 1.0f + a.scale * k;
    __stcs(reinterpret_cast<float4*>(rows + k * kDim),
           make_float4(v[k].x * c, v[k].y * c, v[k].z * c, v[k].w * c));
    s.x += v[k].x;
    s.y += v[k].y;
    s.z += v[k].z;
    s.w += v[k].w;
  }
  partial[warp][lane] = s;
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int w = 1; w < kWarps; ++w) {
      s.x += partial[w][lane].x;
      s.y += partial[w][lane].y;
      s.z += partial[w][lane].z;
      s.w += partial[w][lane].w;
    }
    if (kParts > 1 || a.scale != 0.0f)
      a.partials[(int64_t{blockIdx.y} * gridDim.x + blockIdx.x) * 32 + lane] = s;
  }
}

// One block of 256 threads per 8 rows of a tile (4 KiB, one float4 per thread), each piece
// loaded and written back at once: the shape of the copy_flat peer, in place through the slot
// indices. SUMS 1: the block also sums its 8 rows per column (shared memory) and writes the
// 512-byte sums to a.partials; SUMS 2: it adds them into one accumulator per (row, head)
// instead (red.global.add.v4.f32, in a.partials); SUMS -1: as 0, with row y in slot
// a.slot_base + y (no slot lookup). The pattern of a state kept as a matrix plus one pending
// rank-1 term (no row needs a reduction before its write).
template <int SUMS>
__global__ void __launch_bounds__(256) FlatRowsPatternKernel(Args a) {
  __shared__ float4 partial[8][32];
  float4* piece = reinterpret_cast<float4*>(WarpRows(
      a, 8, 1, SUMS < 0 ? (a.slot_base + static_cast<int>(blockIdx.y)) % a.num_slots : -1));
  if (piece == nullptr) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float4 v = *piece;
  const float c = 1.0f + a.scale;
  __stcs(piece, make_float4(v.x * c, v.y * c, v.z * c, v.w * c));
  if (SUMS <= 0) return;
  partial[warp][lane] = v;
  __syncthreads();
  if (warp != 0) return;
  float4 s = v;
#pragma unroll
  for (int w = 1; w < 8; ++w) {
    s.x += partial[w][lane].x;
    s.y += partial[w][lane].y;
    s.z += partial[w][lane].z;
    s.w += partial[w][lane].w;
  }
  if (SUMS == 1) {
    a.partials[(int64_t{blockIdx.y} * gridDim.x + blockIdx.x) * 32 + lane] = s;
  } else {
    const int head = blockIdx.x / (kDim / 8);
    float4* acc = a.partials + (int64_t{blockIdx.y} * kHeads + head) * 32 + lane;
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(acc), "f"(s.x),
                 "f"(s.y), "f"(s.z), "f"(s.w)
                 : "memory");
  }
}

// In-place copy of the launch's state tiles with no dependency at all: a grid of THREADS-thread
// blocks strides over every float4 of the batch's tiles, UNROLL loads then UNROLL stores per
// thread and step (the shape of a device-to-device copy kernel, through the slot indices).
template <int UNROLL>
__global__ void __launch_bounds__(256) StreamCopyPatternKernel(Args a, int batch) {
  constexpr int64_t kVecsPerSlot = int64_t{kHeads} * kDim * kDim / 4;
  const int64_t total = batch * kVecsPerSlot;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i0 = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i0 < total;
       i0 += stride * UNROLL) {
    float4 v[UNROLL];
    float4* p[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int64_t i = i0 + u * stride;
      p[u] = nullptr;
      if (i < total) {
        const int slot = a.slots[i / kVecsPerSlot];
        p[u] = reinterpret_cast<float4*>(a.pool + slot * a.slot_stride) + i % kVecsPerSlot;
        v[u] = *p[u];
      }
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u)
      if (p[u] != nullptr) __stcs(p[u], v[u]);
  }
}

// Contiguous copy of n float4 from src to dst: the shape of a device-to-device copy kernel.
template <int UNROLL, bool STREAMING = true>
__global__ void __launch_bounds__(256) ContiguousCopyKernel(const float4* src, float4* dst,
                                                           int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i0 = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i0 < n; i0 += stride * UNROLL) {
    float4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u)
      if (i0 + u * stride < n) v[u] = src[i0 + u * stride];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u)
      if (i0 + u * stride < n) {
        if (STREAMING) {
          __stcs(dst + i0 + u * stride, v[u]);
        } else {
          dst[i0 + u * stride] = v[u];
        }
      }
  }
}

// One block per (tile, part of COLS columns), fetched as one tensor-map box of COLS x 128.
template <int COLS>
__global__ void __launch_bounds__(kThreads) TensorMapPatternKernel(const __grid_constant__
                                                                   CUtensorMap map, Args a) {
  extern __shared__ __align__(128) unsigned char tile[];
  __shared__ __align__(8) uint64_t bar;
  constexpr int kParts = kDim / COLS;
  const int head = blockIdx.x / kParts, part = blockIdx.x % kParts;
  const int slot = a.slots[blockIdx.y];
  if (slot < 0 || slot >= a.num_slots) return;
  float* state = reinterpret_cast<float*>(a.pool + slot * a.slot_stride) +
                 int64_t{head} * kDim * kDim + part * COLS;
  if (threadIdx.x == 0) {
    MbarInit(SharedAddr(&bar));
    MbarArriveExpectTx(SharedAddr(&bar), kDim * COLS * 4);
    const uint32_t dst = SharedAddr(tile), b = SharedAddr(&bar);
    const uint64_t m = reinterpret_cast<uint64_t>(&map);
    if (a.evict_last) {
      asm volatile(
          "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
          ".L2::cache_hint [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
          "l"(m), "r"(part * COLS), "r"(head * kDim), "r"(slot), "r"(b), "l"(L2EvictLastPolicy())
          : "memory");
    } else {
      asm volatile(
          "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
          " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
          "l"(m), "r"(part * COLS), "r"(head * kDim), "r"(slot), "r"(b)
          : "memory");
    }
  }
  __syncthreads();
  MbarWaitParity(SharedAddr(&bar), 0);
  const float4* in = reinterpret_cast<const float4*>(tile);
  constexpr int kVecs = COLS / 4;
#pragma unroll 4
  for (int i = threadIdx.x; i < kDim * kVecs; i += kThreads)
    __stcs(reinterpret_cast<float4*>(state + (i / kVecs) * kDim) + i % kVecs, in[i]);
}

// Fills n floats with small pseudo-random values (a hash of the index): the patterns move data
// like a decode state's, as gdn2_decode_bench does (zeros measured the same on an H200).
__global__ void FillRandomKernel(float* p, int64_t n) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 15;
    h *= 0x85EBCA77u;
    h ^= h >> 13;
    p[i] = (static_cast<float>(h >> 8) * (1.0f / 16777216.0f) - 0.5f) * 0.1f;
  }
}

// The pool's state as a 3D tensor (128 columns, 16 x 128 rows, slots) with COLS x 128 boxes.
CUtensorMap StateTensorMap(char* pool, int64_t slot_stride, int num_slots, int cols) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found;
  BENCH_CUDA(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                              cudaEnableDefault, &found));
  if (found != cudaDriverEntryPointSuccess) {
    std::fprintf(stderr, "no cuTensorMapEncodeTiled\n");
    std::exit(2);
  }
  auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  CUtensorMap map;
  const cuuint64_t dims[3] = {kDim, cuuint64_t{kHeads} * kDim, static_cast<cuuint64_t>(num_slots)};
  const cuuint64_t strides[2] = {kDim * 4, static_cast<cuuint64_t>(slot_stride)};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(cols), kDim, 1};
  const cuuint32_t steps[3] = {1, 1, 1};
  if (encode(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, pool, dims, strides, box, steps,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) !=
      CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed\n");
    std::exit(2);
  }
  return map;
}

struct Pattern {
  const char* name;
  const void* kernel;
  int cols;         // columns per block
  bool tensor_map;
  int threads = kThreads;
  bool registers = false;  // no dynamic shared memory
  bool grid_stride = false;  // StreamCopyPatternKernel: a full wave of blocks, no tile grid
  int smem_pad = 0;  // dynamic shared memory of a register pattern: fewer blocks per SM
  // Order of the launch's slots: shuffled over the pool (kShuffled), in pool order and
  // contiguous (kPoolOrder), or the shuffled set sorted (kSorted: ascending, with gaps).
  enum Order { kShuffled, kPoolOrder, kSorted };
  Order order = kShuffled;
  bool evict_last_always = false;  // evict_last fetches at every batch, not from 128 MiB
};

struct Row {
  std::string pattern;
  int batch, blocks_per_sm;
  double us, ratio;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<const char*> positional;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) != 0) positional.push_back(argv[i]);
  }
  const std::string out_path = positional.size() > 0 ? positional[0] : "state_pattern_bench.json";
  const int slot_mib = positional.size() > 1 ? std::atoi(positional[1]) : 0;
  const std::vector<std::string> only = ListFlag(argc, argv, "--patterns");
  bool zeros = false;
  for (int i = 1; i < argc; ++i) zeros = zeros || std::strcmp(argv[i], "--zeros") == 0;
  const DeviceInfo dev = GetDeviceInfo();
  const double copy_bw0 = CopyBandwidth(size_t{1} << 30);
  std::printf("device: %s, %d SMs; device-to-device copy %.3f TB/s\n", dev.name.c_str(),
              dev.sms, copy_bw0 / 1e12);

  const int num_slots = 2304;
  // One layer's state + its histories' room per slot, unless the second argument gives the
  // slot's size in MiB (the engine's pools are slot-major: every layer of a slot together).
  const int64_t slot_stride = slot_mib > 0 ? int64_t{slot_mib} << 20
                                            : int64_t{kHeads} * kDim * kDim * 4 + 25600;
  char* pool = nullptr;
  BENCH_CUDA(cudaMalloc(&pool, num_slots * slot_stride));
  if (zeros) {
    BENCH_CUDA(cudaMemset(pool, 0, num_slots * slot_stride));
  } else {
    FillRandomKernel<<<dev.sms * 8, 256>>>(reinterpret_cast<float*>(pool),
                                           num_slots * slot_stride / 4);
    BENCH_CUDA(cudaGetLastError());
  }
  std::vector<int32_t> perm(num_slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 rng(1234);
  std::shuffle(perm.begin(), perm.end(), rng);
  perm.insert(perm.end(), perm.begin(), perm.begin() + 1024);  // wrap-around sets
  int32_t* d_perm = nullptr;
  BENCH_CUDA(cudaMalloc(&d_perm, perm.size() * sizeof(int32_t)));
  BENCH_CUDA(cudaMemcpy(d_perm, perm.data(), perm.size() * sizeof(int32_t),
                        cudaMemcpyHostToDevice));
  float4* partials = nullptr;  // one float4 per lane of every block of 8 rows at batch 1024
  BENCH_CUDA(cudaMalloc(&partials, size_t{1024} * kHeads * (kDim / 8) * 32 * sizeof(float4)));
  std::vector<int32_t> ident(num_slots + 1024);
  for (size_t i = 0; i < ident.size(); ++i) ident[i] = static_cast<int32_t>(i % num_slots);
  int32_t* d_ident = nullptr;
  BENCH_CUDA(cudaMalloc(&d_ident, ident.size() * sizeof(int32_t)));
  BENCH_CUDA(cudaMemcpy(d_ident, ident.data(), ident.size() * sizeof(int32_t),
                        cudaMemcpyHostToDevice));
  const CUtensorMap half_map = StateTensorMap(pool, slot_stride, num_slots, 64);

  const Pattern patterns[] = {
      {"tile", reinterpret_cast<const void*>(BulkPatternKernel<128, 1, false>), 128, false},
      {"tile_rows_early", reinterpret_cast<const void*>(BulkPatternKernel<128, 4, true>), 128,
       false},
      {"tile_cols_early", reinterpret_cast<const void*>(BulkPatternKernel<128, 4, false>), 128,
       false},
      {"halves", reinterpret_cast<const void*>(BulkPatternKernel<64, 1, false>), 64, false},
      {"quarters", reinterpret_cast<const void*>(BulkPatternKernel<32, 1, false>), 32, false},
      {"halves_tmap", reinterpret_cast<const void*>(TensorMapPatternKernel<64>), 64, true},
      {"regs_tile", reinterpret_cast<const void*>(RegisterPatternKernel<128, 256, true>), 128,
       false, 256, true},
      {"regs_halves", reinterpret_cast<const void*>(RegisterPatternKernel<64, 128, true>), 64,
       false, 128, true},
      {"regs_quarters", reinterpret_cast<const void*>(RegisterPatternKernel<32, 128, true>), 32,
       false, 128, true},
      {"regs_quarters_nored",
       reinterpret_cast<const void*>(RegisterPatternKernel<32, 128, false>), 32, false, 128,
       true},
      {"rows16", reinterpret_cast<const void*>(RowPatternKernel<16>), 16, false, 128, true},
      {"rows32", reinterpret_cast<const void*>(RowPatternKernel<32>), 32, false, 128, true},
      {"rows64", reinterpret_cast<const void*>(RowPatternKernel<64>), 64, false, 128, true},
      {"rows8", reinterpret_cast<const void*>(RowPatternKernel<8>), 8, false, 128, true},
      {"rows16_8sm", reinterpret_cast<const void*>(RowPatternKernel<16>), 16, false, 128, true,
       false, 26 << 10},
      {"rows16_4sm", reinterpret_cast<const void*>(RowPatternKernel<16>), 16, false, 128, true,
       false, 50 << 10},
      {"stream_rows16", reinterpret_cast<const void*>(StreamRowsPatternKernel<16, 4>), 16,
       false, 128, true},
      {"stream_rows16_8sm", reinterpret_cast<const void*>(StreamRowsPatternKernel<16, 4>), 16,
       false, 128, true, false, 26 << 10},
      {"stream_rows32", reinterpret_cast<const void*>(StreamRowsPatternKernel<32, 8>), 32,
       false, 128, true},
      {"stream_head", reinterpret_cast<const void*>(StreamRowsPatternKernel<128, 16>), 128,
       false, 256, true},
      {"flat_rows8", reinterpret_cast<const void*>(FlatRowsPatternKernel<0>), 8, false, 256,
       true},
      {"flat_rows8_ident", reinterpret_cast<const void*>(FlatRowsPatternKernel<0>), 8, false,
       256, true, false, 0, Pattern::kPoolOrder},
      {"flat_rows8_sorted", reinterpret_cast<const void*>(FlatRowsPatternKernel<0>), 8, false,
       256, true, false, 0, Pattern::kSorted},
      {"flat_rows8_nolookup", reinterpret_cast<const void*>(FlatRowsPatternKernel<-1>), 8,
       false, 256, true, false, 0, Pattern::kPoolOrder},
      {"tile_ident", reinterpret_cast<const void*>(BulkPatternKernel<128, 1, false>), 128, false,
       kThreads, false, false, 0, Pattern::kPoolOrder},
      {"tile_bulk_store_ident", reinterpret_cast<const void*>(TileStorePatternKernel<0>), 128,
       false, kThreads, false, false, 0, Pattern::kPoolOrder},
      {"tile_bulk_store_ef_ident", reinterpret_cast<const void*>(TileStorePatternKernel<1>),
       128, false, kThreads, false, false, 0, Pattern::kPoolOrder},
      {"tile_plain_store_ident", reinterpret_cast<const void*>(TileStorePatternKernel<2>), 128,
       false, kThreads, false, false, 0, Pattern::kPoolOrder},
      {"tile_plain_store_el_ident", reinterpret_cast<const void*>(TileStorePatternKernel<2>),
       128, false, kThreads, false, false, 0, Pattern::kPoolOrder, true},
      {"tile_el_ident", reinterpret_cast<const void*>(BulkPatternKernel<128, 1, false>), 128,
       false, kThreads, false, false, 0, Pattern::kPoolOrder, true},
      {"tile_sorted", reinterpret_cast<const void*>(BulkPatternKernel<128, 1, false>), 128,
       false, kThreads, false, false, 0, Pattern::kSorted},
      {"tile_2sm", reinterpret_cast<const void*>(BulkPatternKernel<128, 1, false>), 128, false,
       kThreads, false, false, 40 << 10},
      {"flat_rows8_sums", reinterpret_cast<const void*>(FlatRowsPatternKernel<1>), 8, false,
       256, true},
      {"flat_rows8_red", reinterpret_cast<const void*>(FlatRowsPatternKernel<2>), 8, false, 256,
       true},
      {"halves_ident", reinterpret_cast<const void*>(BulkPatternKernel<64, 1, false>), 64, false,
       kThreads, false, false, 0, Pattern::kPoolOrder},
      {"regs_halves_ident", reinterpret_cast<const void*>(RegisterPatternKernel<64, 128, true>),
       64, false, 128, true, false, 0, Pattern::kPoolOrder},
      {"rows16_ident", reinterpret_cast<const void*>(RowPatternKernel<16>), 16, false, 128, true,
       false, 0, Pattern::kPoolOrder},
      {"stream_head_ident", reinterpret_cast<const void*>(StreamRowsPatternKernel<128, 16>), 128,
       false, 256, true, false, 0, Pattern::kPoolOrder},
      {"copy_unroll4", reinterpret_cast<const void*>(StreamCopyPatternKernel<4>), 128, false,
       256, true, true},
      {"copy_unroll8", reinterpret_cast<const void*>(StreamCopyPatternKernel<8>), 128, false,
       256, true, true},
  };
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<Row> rows;
  for (int batch : {32, 64, 128, 256, 512, 1024}) {
    const int64_t state_bytes = int64_t{batch} * kHeads * kDim * kDim * 4;
    const int sets = static_cast<int>(std::max<int64_t>(
        2, std::min<int64_t>(num_slots / batch, (int64_t{256} << 20) / state_bytes + 1)));
    const int launches = std::max(sets, 20);
    // The same sets as d_perm's, each sorted by slot.
    std::vector<int32_t> sorted(static_cast<size_t>(sets) * batch);
    for (int k = 0; k < sets; ++k) {
      const int64_t base = (int64_t{k} * batch) % num_slots;
      std::copy(perm.begin() + base, perm.begin() + base + batch, sorted.begin() + k * batch);
      std::sort(sorted.begin() + k * batch, sorted.begin() + (k + 1) * batch);
    }
    int32_t* d_sorted = nullptr;
    BENCH_CUDA(cudaMalloc(&d_sorted, sorted.size() * sizeof(int32_t)));
    BENCH_CUDA(cudaMemcpy(d_sorted, sorted.data(), sorted.size() * sizeof(int32_t),
                          cudaMemcpyHostToDevice));
    for (const Pattern& p : patterns) {
      if (!Selected(only, p.name)) continue;
      const int smem = (p.registers ? 0 : kDim * p.cols * 4) + p.smem_pad;
      BENCH_CUDA(cudaFuncSetAttribute(p.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      smem));
      BENCH_CUDA(cudaFuncSetAttribute(p.kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      cudaSharedmemCarveoutMaxShared));
      int per_sm = 0;
      BENCH_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, p.kernel, p.threads,
                                                               smem));
      Args a{nullptr, pool, slot_stride, num_slots,
             p.evict_last_always || state_bytes >= kEvictLastBytes, 0.0f, partials};
      const dim3 grid = p.grid_stride ? dim3(dev.sms * per_sm) : dim3(kHeads * (kDim / p.cols),
                                                                      batch);
      int launch_i = 0;
      auto body = [&](int n) {
        for (int i = 0; i < n; ++i) {
          const int64_t base = (static_cast<int64_t>(launch_i++ % sets) * batch) % num_slots;
          a.slots = p.order == Pattern::kPoolOrder ? d_ident + base
                    : p.order == Pattern::kSorted  ? d_sorted + (launch_i - 1) % sets * batch
                                                   : d_perm + base;
          a.slot_base = static_cast<int>(base);
          int batch_arg = batch;
          void* plain[] = {&a, &batch_arg};
          void* mapped[] = {const_cast<CUtensorMap*>(&half_map), &a};
          BENCH_CUDA(cudaLaunchKernel(p.kernel, grid, dim3(p.threads),
                                      p.tensor_map ? mapped : plain, smem, stream));
        }
      };
      body(3);
      BENCH_CUDA(cudaStreamSynchronize(stream));
      const double t = TimeGraph(stream, [&] { body(launches); }, launches);
      rows.push_back({p.name, batch, per_sm, t * 1e6, 2.0 * state_bytes / t / copy_bw0});
    }
    // Peers that are not in place: the same bytes copied between two contiguous buffers, as
    // graph memcpy nodes and by a copy kernel (sources and targets rotate through the pool).
    const int64_t copy_sets = std::min<int64_t>(sets, num_slots * slot_stride / state_bytes / 2);
    int copy_i = 0;
    auto span = [&](int k) { return pool + (copy_i * 2 + k) % (2 * copy_sets) * state_bytes; };
    const double t_memcpy = TimeGraph(stream, [&] {
      for (int i = 0; i < launches; ++i, ++copy_i)
        BENCH_CUDA(cudaMemcpyAsync(span(1), span(0), state_bytes, cudaMemcpyDeviceToDevice,
                                   stream));
    }, launches);
    rows.push_back({"memcpy_graph", batch, 0, t_memcpy * 1e6, 2.0 * state_bytes / t_memcpy /
                                                                  copy_bw0});
    auto copy_kernel_row = [&](const char* name, const void* kernel, bool flat, int unroll,
                               bool in_place = false) {
      int per_sm = 0;
      BENCH_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 256, 0));
      const int64_t n = state_bytes / 16;
      const int blocks = flat ? static_cast<int>((n + 256 * unroll - 1) / (256 * unroll))
                              : dev.sms * per_sm;
      const double t = TimeGraph(stream, [&] {
        for (int i = 0; i < launches; ++i, ++copy_i) {
          const float4* src = reinterpret_cast<const float4*>(span(0));
          float4* dst = reinterpret_cast<float4*>(span(in_place ? 0 : 1));
          int64_t n_arg = n;
          void* args[] = {&src, &dst, &n_arg};
          BENCH_CUDA(cudaLaunchKernel(kernel, dim3(blocks), dim3(256), args, 0, stream));
        }
      }, launches);
      rows.push_back({name, batch, per_sm, t * 1e6, 2.0 * state_bytes / t / copy_bw0});
    };
    copy_kernel_row("copy_wave_u1", reinterpret_cast<const void*>(ContiguousCopyKernel<1>),
                    false, 1);
    copy_kernel_row("copy_wave_u2", reinterpret_cast<const void*>(ContiguousCopyKernel<2>),
                    false, 2);
    copy_kernel_row("copy_wave_u4", reinterpret_cast<const void*>(ContiguousCopyKernel<4>),
                    false, 4);
    copy_kernel_row("copy_wave_u8", reinterpret_cast<const void*>(ContiguousCopyKernel<8>),
                    false, 8);
    copy_kernel_row("copy_flat_u1", reinterpret_cast<const void*>(ContiguousCopyKernel<1>),
                    true, 1);
    copy_kernel_row("copy_flat_u1_in_place",
                    reinterpret_cast<const void*>(ContiguousCopyKernel<1>), true, 1, true);
    copy_kernel_row("copy_flat_u4", reinterpret_cast<const void*>(ContiguousCopyKernel<4>),
                    true, 4);
    copy_kernel_row("copy_flat_u4_plain",
                    reinterpret_cast<const void*>(ContiguousCopyKernel<4, false>), true, 4);
    BENCH_CUDA(cudaFree(d_sorted));
  }
  BENCH_CUDA(cudaGetLastError());
  const double copy_bw1 = CopyBandwidth(size_t{1} << 30);

  FILE* f = OpenJsonReport(out_path, "state_pattern", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"copy_bw_bytes_per_s\": [%.6e, %.6e],\n", copy_bw0, copy_bw1);
  std::fprintf(f, "  \"timing\": \"CUDA graph of N launches rotating over disjoint slot sets, "
                  "median of 15 replays / N; bytes = fp32 state read + written\",\n");
  std::fprintf(f, "  \"rows\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"pattern\": \"%s\", \"batch\": %d, \"blocks_per_sm\": %d, "
                 "\"us_per_launch\": %.3f, \"ratio_to_copy\": %.4f}%s\n",
                 r.pattern.c_str(), r.batch, r.blocks_per_sm, r.us, r.ratio,
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);

  std::printf("copy bandwidth: %.3f TB/s at start, %.3f TB/s at end\n", copy_bw0 / 1e12,
              copy_bw1 / 1e12);
  std::printf("%-16s %6s %7s %10s %7s\n", "pattern", "batch", "per SM", "us/launch", "ratio");
  for (const Row& r : rows)
    std::printf("%-16s %6d %7d %10.2f %7.3f\n", r.pattern.c_str(), r.batch, r.blocks_per_sm,
                r.us, r.ratio);
  cudaFree(partials);
  cudaFree(d_ident);
  cudaFree(d_perm);
  cudaFree(pool);
  return 0;
}
