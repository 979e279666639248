// Sliding-window attention decode (see swa_decode.h). Split-K over the key window: each block
// computes, per (sequence, head, split), an online-softmax partial (max, sum, weighted values).
// One split: the block writes the output. More: the last block of a (sequence, head) to finish,
// found by a counter, merges the splits (a second merge launch measured slower at every split
// count, up to 32 at batch 1; bench/NOTES.md).
// Warps stride over keys; a lane holds head_size/32 contiguous dimensions, so one key row is one
// coalesced warp load, and each warp loads a batch of four key / value rows (eight from a bf16
// ring) before using them (memory-level parallelism), whose scores are reduced side by side and
// enter the online softmax together. Before it reads q/k/v, a block forms its RoPE
// coefficients and loads each warp's first batch of older key / value rows. With overlap_launch
// the kernel is a programmatic dependent that triggers its own dependents at once; it does that
// work, and asks L2 for its split's next older rows (32 MB per launch at most; none at batch 1),
// before it waits for the predecessor (the q/k/v producer), so they stream in while that kernel
// drains.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/status_util.h"
#include "kernels/cuda/swa_decode.h"
#include "kernels/cuda/swa_ring.cuh"

namespace deltaserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxSplits = 32;

struct P {
  int nh, G, hs, window, rope_dims, splits;
  double rope_base;
  const int32_t* slots;
  char* pool;
  int64_t num_slots, stride, k_off, v_off, pos_off;
  bool overlap;
  int prefetch_rows;  // per block, with overlap (bounded so that all blocks' fit in L2)
  const float* qkv;
  int64_t qkv_st;
  void* y;
  int64_t y_st;
  bool y_bf16;
  float* scratch;
  uint32_t* counters;
};

// NeoX RoPE of element t at position pos: out[t] = x[t] * c + x[partner] * s (s signed), or
// x[t] past rope_dims. The coefficients need only t and pos, so they are formed apart from x.
struct RopeCoef {
  float c = 1.0f, s = 0.0f;
  int partner = -1;  // -1: not rotated
  __device__ __forceinline__ RopeCoef(int t, int rope_dims, double base, int64_t pos) {
    const int half = rope_dims / 2;
    if (t >= rope_dims || half == 0) return;
    const int i = t < half ? t : t - half;
    const double inv_freq = pow(base, -2.0 * i / static_cast<double>(rope_dims));
    const double th = static_cast<double>(pos) * inv_freq;
    c = static_cast<float>(cos(th));
    const float sn = static_cast<float>(sin(th));
    s = t < half ? -sn : sn;
    partner = t < half ? t + half : t - half;
  }
  __device__ __forceinline__ float Apply(const float* x, int t) const {
    return partner < 0 ? x[t] : x[t] * c + x[partner] * s;
  }
};

__device__ __forceinline__ void StoreOut(const P& p, int b, int h, int t, float out) {
  const int64_t at = static_cast<int64_t>(b) * p.y_st + static_cast<int64_t>(h) * p.hs + t;
  if (p.y_bf16) {
    static_cast<__nv_bfloat16*>(p.y)[at] = __float2bfloat16_rn(out);
  } else {
    static_cast<float*>(p.y)[at] = out;
  }
}

// Output dimension t of (b, h) from the splits' partials {M, L, a[HS]}, merged in one pass with
// a running maximum (the loads of different splits do not wait on each other). The partials
// were written by other blocks of this launch, so they are read through L2 only.
template <int HS>
__device__ __forceinline__ float MergeSplits(const P& p, int b, int h, int t) {
  const float* part = p.scratch + (static_cast<int64_t>(b) * p.nh + h) * p.splits * (HS + 2);
  float M = -INFINITY, L = 0.0f, a = 0.0f;
#pragma unroll 8
  for (int sp = 0; sp < p.splits; ++sp) {
    const float* ps = part + sp * (HS + 2);
    const float ms = __ldcg(ps), ls = __ldcg(ps + 1), as = __ldcg(ps + 2 + t);
    if (ms == -INFINITY) continue;  // a split with no keys
    const float mn = fmaxf(M, ms);
    const float co = __expf(M - mn), cn = __expf(ms - mn);  // co = 0 while M = -inf
    L = L * co + ls * cn;
    a = a * co + as * cn;
    M = mn;
  }
  return a / L;
}

// One lane's VPL elements of a key or value row between its load and its use: fp32 values, or
// for a bf16 ring at four elements per lane the 8 loaded bytes, widened when used.
template <typename RT, int VPL>
struct RowSlice {
  static constexpr bool kPacked = false;
  float x[VPL];
  __device__ __forceinline__ void Load(const RT* p) {
    if constexpr (VPL == 4) {
      const float4 a = RingElem<RT>::Load4Streaming(p);
      x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w;
    } else {
#pragma unroll
      for (int v = 0; v < VPL; ++v) x[v] = RingElem<RT>::LoadStreaming(p + v);
    }
  }
  __device__ __forceinline__ void Zero() {
#pragma unroll
    for (int v = 0; v < VPL; ++v) x[v] = 0.0f;
  }
  __device__ __forceinline__ void Set(const float* src) {
#pragma unroll
    for (int v = 0; v < VPL; ++v) x[v] = src[v];
  }
  __device__ __forceinline__ float operator[](int v) const { return x[v]; }
};

template <>
struct RowSlice<__nv_bfloat16, 4> {
  static constexpr bool kPacked = true;
  uint2 raw;
  __device__ __forceinline__ void Load(const __nv_bfloat16* p) {
    raw = __ldcs(reinterpret_cast<const uint2*>(p));
  }
  __device__ __forceinline__ void Zero() { raw = make_uint2(0u, 0u); }
  __device__ __forceinline__ float operator[](int v) const {
    const uint32_t w = v < 2 ? raw.x : raw.y;
    return RingElem<__nv_bfloat16>::Widen(v % 2 == 0 ? w : w >> 16);
  }
};

template <int HS, typename RT>
__global__ void __launch_bounds__(kWarps * 32) SwaDecodeKernel(const P p) {
  using Ring = RingElem<RT>;
  constexpr int VPL = HS / 32;
  static_assert(HS <= kWarps * 32, "one thread per head dimension in the RoPE step");
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int qpg = p.nh / p.G;
  const int g = h / qpg;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  __shared__ float q_s[HS], k_s[HS], v_s[HS], raw_q[HS], raw_k[HS];
  __shared__ float wm[kWarps], wl[kWarps], wacc[kWarps][HS];

  if (p.overlap) cudaTriggerProgrammaticLaunchCompletion();
  // Before the wait (overlap_launch) only what the predecessor does not write is read: the slot,
  // its position and the ring rows of earlier positions.
  const int slot = p.slots[b];
  float* part = p.scratch + ((static_cast<int64_t>(b) * p.nh + h) * p.splits + split) * (HS + 2);
  if (slot < 0 || slot >= p.num_slots) {
    if (p.overlap) cudaGridDependencySynchronize();  // the grid never completes before it
    return;
  }
  char* base = p.pool + static_cast<int64_t>(slot) * p.stride;
  const int64_t pos = *reinterpret_cast<const int64_t*>(base + p.pos_off);
  RT* kring = reinterpret_cast<RT*>(base + p.k_off);
  RT* vring = reinterpret_cast<RT*>(base + p.v_off);

  // Key range of this split: positions [lo + split*chunk, ...] within [lo, pos].
  const int64_t lo = pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
  const int64_t chunk = (p.window + p.splits - 1) / p.splits;
  const int64_t j0 = lo + split * chunk;
  const int64_t j1 = min(pos, j0 + chunk - 1);
  // Rows [j0, jr] of this split go through the batches below. Each warp takes rows j0 + warp,
  // j0 + warp + kWarps, ... in that order, KU at a time: a batch is loaded before its first row
  // is used, so KU row loads per warp are in flight (the first batch's before the wait). Rows
  // before `pos` come from the ring; the row at `pos`, the new token's, from k_s / v_s: into its
  // batch's slices for fp32 rows (jr = j1), or, for bf16 rows, which stay as loaded (RowSlice,
  // so twice as many fit the same registers), on its own before the batches (jr = pos - 1 at
  // most). `rb`, the ring row of a batch's first key, advances with the batches (no 64-bit
  // division per row).
  using Slice = RowSlice<RT, VPL>;
  constexpr int KU = Slice::kPacked ? 8 : 4;
  Slice kk[KU], vv[KU];
  const int64_t jr = Slice::kPacked ? min(j1, pos - 1) : j1;
  const int window = p.window;
  const auto wrap = [window](int r) {  // r < 2 * window, or any r when window < kWarps * KU
    if (r >= window) r -= window;
    return r < window ? r : r % window;
  };
  int rb = static_cast<int>((j0 + warp) % window);
  auto load_ring_rows = [&](int64_t jb) {
#pragma unroll
    for (int t = 0; t < KU; ++t) {
      if (jb + t * kWarps <= jr && (Slice::kPacked || jb + t * kWarps != pos)) {
        const int r = (wrap(rb + t * kWarps) * p.G + g) * HS + lane * VPL;
        kk[t].Load(kring + r);
        vv[t].Load(vring + r);
      } else {
        kk[t].Zero();
        vv[t].Zero();
      }
    }
  };
  load_ring_rows(j0 + warp);
  const RopeCoef rope(tid, p.rope_dims, p.rope_base, pos);  // blockDim.x >= HS
  if (p.overlap) {
    // The split's next key and value rows before `pos` (past the first batches), a 128-byte
    // line per thread and step.
    constexpr int kLineElems = 128 / sizeof(RT);
    constexpr int kLines = (HS + kLineElems - 1) / kLineElems;
    const int64_t jp = j0 + kWarps * KU;
    const int64_t rows =
        min(int64_t{p.prefetch_rows}, max(int64_t{0}, min(jr, pos - 1) - jp + 1));
    for (int64_t i = tid; i < 2 * rows * kLines; i += blockDim.x) {
      const int64_t j = jp + i / (2 * kLines);
      const int line = static_cast<int>(i % (2 * kLines));
      const RT* ring = line < kLines ? kring : vring;
      const RT* at = ring + ((j % p.window) * p.G + g) * HS + (line % kLines) * kLineElems;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(at));
    }
    cudaGridDependencySynchronize();
  }

  const float* row = p.qkv + static_cast<int64_t>(b) * p.qkv_st +
                     static_cast<int64_t>(g) * (qpg + 2) * HS;
  for (int t = tid; t < HS; t += blockDim.x) {
    raw_q[t] = row[(h % qpg) * HS + t];
    raw_k[t] = row[qpg * HS + t];
    v_s[t] = row[(qpg + 1) * HS + t];
  }
  __syncthreads();
  if (tid < HS) {
    q_s[tid] = rope.Apply(raw_q, tid);
    k_s[tid] = rope.Apply(raw_k, tid);
  }
  __syncthreads();
  const int64_t ring_row = pos % p.window;
  if (split == 0 && h % qpg == 0) {
    for (int t = tid; t < HS; t += blockDim.x) {
      Ring::Store(kring + (ring_row * p.G + g) * HS + t, k_s[t]);
      Ring::Store(vring + (ring_row * p.G + g) * HS + t, v_s[t]);
    }
  }

  const float scale = rsqrtf(static_cast<float>(HS));

  float q[VPL];
#pragma unroll
  for (int v = 0; v < VPL; ++v) q[v] = q_s[lane * VPL + v];
  float m = -INFINITY, l = 0.0f, acc[VPL];
#pragma unroll
  for (int v = 0; v < VPL; ++v) acc[v] = 0.0f;
  // bf16 rows: the new token first, by the warp with the fewest ring rows.
  if (Slice::kPacked && j0 <= pos && pos <= j1 && warp == static_cast<int>((pos - j0) % kWarps)) {
    float s = 0.0f;
#pragma unroll
    for (int v = 0; v < VPL; ++v) s += q[v] * k_s[lane * VPL + v];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    m = s * scale;
    l = 1.0f;
#pragma unroll
    for (int v = 0; v < VPL; ++v) acc[v] = v_s[lane * VPL + v];
  }
  for (int64_t jb = j0 + warp; jb <= jr; jb += kWarps * KU) {
    if (jb != j0 + warp) {
      rb = wrap(rb + kWarps * KU);
      load_ring_rows(jb);
    }
    if constexpr (!Slice::kPacked) {
#pragma unroll
      for (int t = 0; t < KU; ++t) {
        if (jb + t * kWarps == pos) {
          kk[t].Set(k_s + lane * VPL);
          vv[t].Set(v_s + lane * VPL);
        }
      }
    }
    // The batch's KU scores as independent reductions, then one online-softmax update (rows
    // past jr score -inf and weigh 0; the batch's first row is always in range).
    float sc[KU];
#pragma unroll
    for (int t = 0; t < KU; ++t) {
      sc[t] = 0.0f;
#pragma unroll
      for (int v = 0; v < VPL; ++v) sc[t] += q[v] * kk[t][v];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
      for (int t = 0; t < KU; ++t) sc[t] += __shfl_xor_sync(0xffffffffu, sc[t], o);
    }
    float mn = m;
#pragma unroll
    for (int t = 0; t < KU; ++t) {
      sc[t] = jb + t * kWarps <= jr ? sc[t] * scale : -INFINITY;
      mn = fmaxf(mn, sc[t]);
    }
    const float corr = __expf(m - mn);  // 0 when m = -inf
    l *= corr;
#pragma unroll
    for (int v = 0; v < VPL; ++v) acc[v] *= corr;
#pragma unroll
    for (int t = 0; t < KU; ++t) {
      const float e = __expf(sc[t] - mn);
      l += e;
#pragma unroll
      for (int v = 0; v < VPL; ++v) acc[v] += e * vv[t][v];
    }
    m = mn;
  }
  if (lane == 0) {
    wm[warp] = m;
    wl[warp] = l;
  }
#pragma unroll
  for (int v = 0; v < VPL; ++v) wacc[warp][lane * VPL + v] = acc[v];
  __syncthreads();
  // This block's partial: max M, softmax sum L and weighted values a (dimension tid).
  float M = -INFINITY, L = 0.0f, a = 0.0f;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm[w]);
  for (int w = 0; w < kWarps; ++w) {
    if (wm[w] == -INFINITY) continue;
    const float e = __expf(wm[w] - M);
    L += wl[w] * e;
    if (tid < HS) a += wacc[w][tid] * e;
  }
  if (p.splits == 1) {  // the block saw the whole window
    if (tid < HS) StoreOut(p, b, h, tid, a / L);
    return;
  }
  if (tid < HS) part[2 + tid] = a;
  if (tid == 0) {
    part[0] = M;
    part[1] = L;
  }

  // Merge by the last block of this (sequence, head): each block's partial is published (fence)
  // before the block counts itself; the last one resets the counter for the next launch.
  __shared__ bool merge;
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    uint32_t* counter = p.counters + static_cast<int64_t>(b) * p.nh + h;
    merge = atomicAdd(counter, 1u) == static_cast<uint32_t>(p.splits - 1);
    if (merge) *counter = 0;
  }
  __syncthreads();
  if (!merge || tid >= HS) return;
  __threadfence();
  StoreOut(p, b, h, tid, MergeSplits<HS>(p, b, h, tid));
}

template <int HS>
absl::Status Launch(const P& p, int batch, bool bf16_ring, cudaStream_t stream) {
  const dim3 grid(p.splits, p.nh, batch);
  return bf16_ring ? LaunchKernel("SwaDecodeKernel", SwaDecodeKernel<HS, __nv_bfloat16>, grid,
                                  dim3(kWarps * 32), 0, stream, p.overlap, p)
                   : LaunchKernel("SwaDecodeKernel", SwaDecodeKernel<HS, float>, grid,
                                  dim3(kWarps * 32), 0, stream, p.overlap, p);
}

// SwaDecodeKernel<HS, RT> blocks one SM holds at once, on the device current at the first call
// (asked once per kernel and then fixed, so that scratch sized by SwaDecodeSplits fits every
// later launch; 0 where the device cannot be asked).
template <int HS, typename RT>
int BlocksPerSmOf() {
  static const int per_sm = [] {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, SwaDecodeKernel<HS, RT>, kWarps * 32,
                                                      0) != cudaSuccess) {
      cudaGetLastError();  // clear it: the launch reports any real problem
      return 0;
    }
    return n;
  }();
  return per_sm;
}

template <typename RT>
int BlocksPerSm(int head_size) {
  switch (head_size) {
    case 32: return BlocksPerSmOf<32, RT>();
    case 64: return BlocksPerSmOf<64, RT>();
    case 128: return BlocksPerSmOf<128, RT>();
    default: return 0;
  }
}

// The last wave's fill when `blocks` blocks run `per_wave` at a time (1: whole waves only).
double LastWaveFill(int64_t blocks, int64_t per_wave) {
  const double waves = static_cast<double>(blocks) / static_cast<double>(per_wave);
  return waves / std::ceil(waves);
}

}  // namespace

int SwaDecodeSplits(const SwaDecodeShape& shape, int batch, int requested) {
  if (requested > 0) return std::min(requested, kMaxSplits);
  const int64_t blocks = int64_t{std::max(batch, 1)} * shape.n_head;
  const int64_t sms = NumSms();
  // As many splits per (sequence, head) as one wave of resident blocks holds, while that is 5
  // or more (batch 1-8 at 18 heads): blocks past a full wave start only when the first ones end,
  // which doubles the longest key chain. H200, swa_gdn2_1.3B step, against eight blocks per SM:
  // batch 2 22 splits against 30, -4 %; batch 4 11 against 15, -3 %; batch 8 5 against 8, -1 %.
  // Otherwise at least about eight 4-warp blocks per SM (at batch 12, 4 splits were 7 % slower
  // than 5), and up to twice that where the last wave is fuller: a last wave a quarter full
  // costs nearly a whole wave's time. H200, fp32 rings (6 blocks per SM): batch 16 8 splits
  // against 4, -3 %, batch 32 4 against 2, -4 %, batch 64 2 against 1, -4.5 %; bf16 rings
  // (7 per SM): 6 against 4, -7.5 %, 3 against 2, -13 %, 2 against 1, -7.5 % (bench/NOTES.md).
  const int64_t per_wave =
      sms * (shape.ring_type == DType::kBF16 ? BlocksPerSm<__nv_bfloat16>(shape.head_size)
                                             : BlocksPerSm<float>(shape.head_size));
  const int64_t one_wave = per_wave / blocks;
  int64_t s = one_wave >= 5 ? one_wave : (8 * sms + blocks - 1) / blocks;
  if (one_wave < 5 && per_wave > 0) {
    const int64_t least = s;
    for (int64_t more = least + 1; more <= 2 * least; ++more) {
      if (LastWaveFill(more * blocks, per_wave) > LastWaveFill(s * blocks, per_wave) + 1e-9)
        s = more;
    }
  }
  s = std::min<int64_t>(s, std::max(1, shape.window / 64));
  return static_cast<int>(std::clamp<int64_t>(s, 1, kMaxSplits));
}

int64_t SwaDecodeScratchFloats(const SwaDecodeShape& shape, int batch, int splits) {
  return int64_t{batch} * shape.n_head * splits * (shape.head_size + 2);
}

absl::Status LaunchSwaDecode(const SwaDecodeShape& s, const SwaDecodeArgs& a,
                             cudaStream_t stream) {
  if (s.n_head <= 0 || s.n_query_groups <= 0 || s.n_head % s.n_query_groups != 0)
    return absl::InvalidArgumentError(absl::StrCat("swa decode: n_head ", s.n_head,
                                                   " must be a multiple of n_query_groups ",
                                                   s.n_query_groups));
  if (s.window < 1) return absl::InvalidArgumentError("swa decode: window must be >= 1");
  if (s.rope_dims < 0 || s.rope_dims % 2 != 0 || s.rope_dims > s.head_size)
    return absl::InvalidArgumentError(absl::StrCat("swa decode: rope_dims ", s.rope_dims,
                                                   " must be even and <= head_size"));
  if (a.batch < 0 || a.batch > 65535)
    return absl::InvalidArgumentError(absl::StrCat("swa decode: batch ", a.batch));
  if (a.batch == 0) return absl::OkStatus();
  if (a.slots == nullptr || a.pool == nullptr || a.qkv == nullptr || a.y == nullptr ||
      a.scratch == nullptr || a.counters == nullptr)
    return absl::InvalidArgumentError("swa decode: a required tensor is null");
  const int64_t ring_elems = int64_t{s.window} * s.n_query_groups * s.head_size;
  if (ring_elems > std::numeric_limits<int32_t>::max())
    return absl::InvalidArgumentError("swa decode: a ring holds more than 2^31 - 1 elements");
  const int64_t ring_bytes = ring_elems * DTypeBytes(s.ring_type);
  if (a.slot_stride_bytes <= 0 || a.k_ring_offset < 0 || a.k_ring_offset % 16 != 0 ||
      a.k_ring_offset + ring_bytes > a.slot_stride_bytes)
    return absl::InvalidArgumentError(absl::StrCat("swa decode: k_ring_offset ", a.k_ring_offset,
                                                   " does not fit the slot stride ",
                                                   a.slot_stride_bytes));
  if (a.v_ring_offset < 0 || a.v_ring_offset % 16 != 0 ||
      a.v_ring_offset + ring_bytes > a.slot_stride_bytes)
    return absl::InvalidArgumentError(absl::StrCat("swa decode: v_ring_offset ", a.v_ring_offset,
                                                   " does not fit the slot stride"));
  if (a.position_offset < 0 || a.position_offset % 8 != 0 ||
      a.position_offset + 8 > a.slot_stride_bytes || a.slot_stride_bytes % 16 != 0)
    return absl::InvalidArgumentError("swa decode: position_offset / slot stride misaligned");
  if (a.batch > 1 && a.qkv_stride < s.qkv_width())
    return absl::InvalidArgumentError(absl::StrCat("swa decode: qkv_stride ", a.qkv_stride,
                                                   " < ", s.qkv_width()));
  if (a.batch > 1 && a.y_stride < int64_t{s.n_head} * s.head_size)
    return absl::InvalidArgumentError("swa decode: y_stride below n_head * head_size");
  const int splits = SwaDecodeSplits(s, a.batch, a.splits);
  if (a.scratch_floats < SwaDecodeScratchFloats(s, a.batch, splits))
    return absl::InvalidArgumentError("swa decode: scratch too small");
  if (a.num_counters < int64_t{a.batch} * s.n_head)
    return absl::InvalidArgumentError("swa decode: fewer counters than batch * n_head");
  P p;
  p.nh = s.n_head; p.G = s.n_query_groups; p.hs = s.head_size; p.window = s.window;
  p.rope_dims = s.rope_dims; p.splits = splits; p.rope_base = s.rope_base;
  p.slots = a.slots; p.pool = static_cast<char*>(a.pool); p.num_slots = a.num_slots;
  p.stride = a.slot_stride_bytes; p.k_off = a.k_ring_offset; p.v_off = a.v_ring_offset;
  p.pos_off = a.position_offset; p.overlap = a.overlap_launch; p.qkv = a.qkv;
  p.qkv_st = a.qkv_stride; p.y = a.y; p.y_st = a.y_stride; p.y_bf16 = a.y_type == DType::kBF16;
  p.scratch = a.scratch; p.counters = a.counters;
  // L2 prefetch budget of a launch: 32 MB over all its blocks (a larger share would evict rows
  // before they are read at large batch). None at batch 1: there the blocks become resident at
  // the tail of the q/k/v product, and the hybrid 1.3B step measured 1-2 % faster without it
  // (H200; bench/NOTES.md).
  const int64_t blocks = int64_t{a.batch} * s.n_head * splits;
  p.prefetch_rows =
      a.batch == 1 ? 0
                   : static_cast<int>(std::min<int64_t>(
                         s.window, (int64_t{32} << 20) /
                                       (blocks * 2 * s.head_size * DTypeBytes(s.ring_type))));
  const bool bf16_ring = s.ring_type == DType::kBF16;
  switch (s.head_size) {
    case 32: return Launch<32>(p, a.batch, bf16_ring, stream);
    case 64: return Launch<64>(p, a.batch, bf16_ring, stream);
    case 128: return Launch<128>(p, a.batch, bf16_ring, stream);
    default:
      return absl::InvalidArgumentError(absl::StrCat("swa decode: head_size ", s.head_size,
                                                     " not in {32,64,128}"));
  }
}

}  // namespace deltaserve::cuda
