// Sliding-window attention prefill kernels; see swa_prefill.h for the contract. Three launches:
// RoPE of the new queries and keys into scratch, attention (tiles of 64 queries on the tensor
// cores, or one warp per token and head with fp32 FMA; both with online softmax), then the ring
// update (after every read of the old ring).
#include "kernels/cuda/swa_prefill.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/mma_tf32.cuh"
#include "kernels/cuda/status_util.h"
#include "kernels/cuda/swa_ring.cuh"

namespace deltaserve::cuda {
namespace {

constexpr int kWarps = 8;

struct Params {
  int nh, G, hs, window, rope_dims;
  double rope_base;
  const int32_t* cu;
  const int32_t* slots;
  char* pool;
  int64_t stride, k_off, v_off, pos_off;
  const float* qkv;
  int64_t qkv_st;
  float* y;
  int64_t y_st;
  float* qrot;  // [tokens, nh, hs]
  float* krot;  // [tokens, G, hs]
};

// Sequence of token `tok` (binary search over cu_seqlens).
__device__ __forceinline__ int SeqOf(const int32_t* cu, int num_seqs, int64_t tok) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= tok) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ int64_t SlotPosition(const Params& p, int s) {
  return *reinterpret_cast<const int64_t*>(p.pool + static_cast<int64_t>(p.slots[s]) * p.stride +
                                           p.pos_off);
}

// grid (tokens, nh + G), block hs threads: RoPE of one query head or one key group.
__global__ void SwaRopeKernel(const Params p, int num_seqs) {
  const int64_t tok = blockIdx.x;
  const int head = blockIdx.y, t = threadIdx.x;
  const int s = SeqOf(p.cu, num_seqs, tok);
  const int64_t pos = SlotPosition(p, s) + (tok - p.cu[s]);
  const int qpg = p.nh / p.G;
  const bool is_q = head < p.nh;
  const int g = is_q ? head / qpg : head - p.nh;
  const float* x = p.qkv + tok * p.qkv_st + static_cast<int64_t>(g) * (qpg + 2) * p.hs +
                   (is_q ? (head % qpg) * p.hs : qpg * p.hs);
  float* out = is_q ? p.qrot + (tok * p.nh + head) * p.hs : p.krot + (tok * p.G + g) * p.hs;
  const int half = p.rope_dims / 2;
  if (t >= p.rope_dims || half == 0) {
    out[t] = x[t];
    return;
  }
  const int i = t < half ? t : t - half;
  const double inv_freq = pow(p.rope_base, -2.0 * i / static_cast<double>(p.rope_dims));
  const double th = static_cast<double>(pos) * inv_freq;
  const float c = static_cast<float>(cos(th)), sn = static_cast<float>(sin(th));
  const float a = x[i], b = x[i + half];
  out[t] = t < half ? a * c - b * sn : b * c + a * sn;
}

// grid (ceil(tokens / kWarps), nh), one warp per (token, head).
template <int VPL, typename RT>
__global__ void __launch_bounds__(kWarps * 32) SwaAttnKernel(const Params p, int num_seqs,
                                                              int64_t total_tokens) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tok = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (tok >= total_tokens) return;
  const int h = blockIdx.y;
  const int qpg = p.nh / p.G, g = h / qpg;
  const int s = SeqOf(p.cu, num_seqs, tok);
  const int64_t start = p.cu[s];
  const int64_t P = SlotPosition(p, s);
  const int64_t pos = P + (tok - start);
  const char* base = p.pool + static_cast<int64_t>(p.slots[s]) * p.stride;
  const RT* kring = reinterpret_cast<const RT*>(base + p.k_off);
  const RT* vring = reinterpret_cast<const RT*>(base + p.v_off);
  const int hs = p.hs;
  float q[VPL], acc[VPL];
#pragma unroll
  for (int v = 0; v < VPL; ++v) {
    const int e = lane + 32 * v;
    q[v] = e < hs ? p.qrot[(tok * p.nh + h) * hs + e] : 0.f;
    acc[v] = 0.f;
  }
  const float scale = rsqrtf(static_cast<float>(hs));
  float m = -INFINITY, l = 0.f;
  const int64_t lo = pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
  for (int64_t j = lo; j <= pos; ++j) {
    float kx[VPL], vx[VPL];
    if (j < P) {
      const int64_t r = ((j % p.window) * p.G + g) * hs;
#pragma unroll
      for (int v = 0; v < VPL; ++v) {
        const int e = lane + 32 * v;
        kx[v] = e < hs ? RingElem<RT>::Load(kring + r + e) : 0.f;
        vx[v] = e < hs ? RingElem<RT>::Load(vring + r + e) : 0.f;
      }
    } else {
      const int64_t jt = start + (j - P);
      const float* kr = p.krot + (jt * p.G + g) * hs;
      const float* vr =
          p.qkv + jt * p.qkv_st + static_cast<int64_t>(g) * (qpg + 2) * hs + (qpg + 1) * hs;
#pragma unroll
      for (int v = 0; v < VPL; ++v) {
        const int e = lane + 32 * v;
        kx[v] = e < hs ? kr[e] : 0.f;
        vx[v] = e < hs ? vr[e] : 0.f;
      }
    }
    float sc = 0.f;
#pragma unroll
    for (int v = 0; v < VPL; ++v) sc = fmaf(q[v], kx[v], sc);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
    sc *= scale;
    const float mn = fmaxf(m, sc);
    const float corr = __expf(m - mn);
    const float e = __expf(sc - mn);
    l = l * corr + e;
#pragma unroll
    for (int v = 0; v < VPL; ++v) acc[v] = acc[v] * corr + e * vx[v];
    m = mn;
  }
  float* yr = p.y + tok * p.y_st + static_cast<int64_t>(h) * hs;
#pragma unroll
  for (int v = 0; v < VPL; ++v) {
    const int e = lane + 32 * v;
    if (e < hs) yr[e] = acc[v] / l;
  }
}

// Tensor-core attention: one block of 4 warps per (tile of kQTile queries of one sequence,
// query head); warp w owns query rows 16w..16w+15 of the tile. Keys of the window are visited in
// tiles of kKTile: S = Q K^T and O += P V as 3xTF32 mma.sync (fp32-level products), online
// softmax in fp32 with the exact expf. Tile b of sequence s is block s + cu[s] / kQTile + b
// (distinct over the batch; fewer than num_seqs + total_tokens / kQTile + 1 blocks).
constexpr int kQTile = 64;
constexpr int kKTile = 32;
constexpr int kMmaThreads = 128;

template <int HS>
constexpr int AttnMmaSmemFloats() {
  return kQTile * (HS + 4) + kKTile * (HS + 4) + kKTile * (HS + 8) + 4 * 16 * (kKTile + 4);
}

template <int HS, typename RT>
__global__ void __launch_bounds__(kMmaThreads) SwaAttnMmaKernel(const Params p, int num_seqs) {
  constexpr int kQP = HS + 4, kKP = HS + 4, kVP = HS + 8, kPP = kKTile + 4;
  constexpr int kNt = HS / 8;  // n-tiles of O
  extern __shared__ float smem[];
  float* qs = smem;
  float* ks = qs + kQTile * kQP;
  float* vs = ks + kKTile * kKP;
  float* ps = vs + kKTile * kVP;

  // Which sequence and tile: the largest s with s + cu[s] / kQTile <= blockIdx.x.
  const int bx = blockIdx.x;
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (mid + p.cu[mid] / kQTile <= bx) lo = mid; else hi = mid - 1;
  }
  const int s = lo;
  const int64_t start = p.cu[s], len = p.cu[s + 1] - start;
  const int64_t q0 = static_cast<int64_t>(bx - (s + p.cu[s] / kQTile)) * kQTile;
  if (q0 >= len) return;
  const int nq = static_cast<int>(min(static_cast<int64_t>(kQTile), len - q0));
  const int h = blockIdx.y, qpg = p.nh / p.G, g_kv = h / qpg;
  const int64_t P = SlotPosition(p, s);
  const char* base = p.pool + static_cast<int64_t>(p.slots[s]) * p.stride;
  const RT* kring = reinterpret_cast<const RT*>(base + p.k_off);
  const RT* vring = reinterpret_cast<const RT*>(base + p.v_off);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;

  for (int i = tid; i < kQTile * (HS / 4); i += kMmaThreads) {
    const int r = i / (HS / 4), c4 = (i % (HS / 4)) * 4;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < nq)
      x = *reinterpret_cast<const float4*>(p.qrot + ((start + q0 + r) * p.nh + h) * HS + c4);
    *reinterpret_cast<float4*>(qs + r * kQP + c4) = x;
  }

  const float scale = rsqrtf(static_cast<float>(HS));
  const int64_t pos0 = P + q0;  // position of query row 0
  const int64_t jlo = max(int64_t{0}, pos0 - p.window + 1), jhi = pos0 + nq - 1;
  const int r0 = warp * 16 + g;  // this thread's rows r0 and r0 + 8
  float o[kNt][4];
#pragma unroll
  for (int n = 0; n < kNt; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float* pw = ps + warp * 16 * kPP;
  const bool warp_active = warp * 16 < nq;

  for (int64_t j0 = jlo; j0 <= jhi; j0 += kKTile) {
    __syncthreads();  // previous tile's K/V reads are done (and Q is stored, first time)
    for (int i = tid; i < kKTile * (HS / 4); i += kMmaThreads) {
      const int r = i / (HS / 4), c4 = (i % (HS / 4)) * 4;
      const int64_t j = j0 + r;
      float4 kx = make_float4(0.f, 0.f, 0.f, 0.f), vx = kx;
      // One guard around both sources. Guarding the ring load alone (`if (j < P) .. else if
      // (j <= jhi)`) gives the same results, but the compiler then allocates 126 registers
      // instead of 165-170 and the kernel runs 18 % slower (bench/NOTES.md).
      if (j <= jhi) {
        if (j < P) {
          const int64_t off = ((j % p.window) * p.G + g_kv) * HS + c4;
          kx = RingElem<RT>::Load4(kring + off);
          vx = RingElem<RT>::Load4(vring + off);
        } else {
          const int64_t jt = start + (j - P);
          const float* kr = p.krot + (jt * p.G + g_kv) * HS;
          const float* vr = p.qkv + jt * p.qkv_st + static_cast<int64_t>(g_kv) * (qpg + 2) * HS +
                            (qpg + 1) * HS;
          kx = *reinterpret_cast<const float4*>(kr + c4);
          vx = *reinterpret_cast<const float4*>(vr + c4);
        }
      }
      *reinterpret_cast<float4*>(ks + r * kKP + c4) = kx;
      *reinterpret_cast<float4*>(vs + r * kVP + c4) = vx;
    }
    __syncthreads();
    if (!warp_active) continue;

    // S = Q K^T for this warp's 16 rows and the tile's kKTile keys.
    float sc[kKTile / 8][4];
#pragma unroll
    for (int n = 0; n < kKTile / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll 4
    for (int kk = 0; kk < HS / 8; ++kk) {
      const float* qa = qs + (warp * 16 + g) * kQP + kk * 8 + t;
      const float af[4] = {qa[0], qa[8 * kQP], qa[4], qa[8 * kQP + 4]};
      const mma::SplitA a(af);
#pragma unroll
      for (int n = 0; n < kKTile / 8; ++n) {
        const float* kb = ks + (n * 8 + g) * kKP + kk * 8 + t;
        mma::Mma3xTf32(sc[n], a, kb[0], kb[4]);
      }
    }
    // Mask (causal, window), online softmax; P to shared memory for the A operand of P V.
    float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kKTile / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = r0 + (e >= 2 ? 8 : 0);
        const int64_t j = j0 + n * 8 + 2 * t + (e & 1);
        const int64_t pos = pos0 + row;
        const bool ok = j <= pos && j > pos - p.window && j <= jhi;
        sc[n][e] = ok ? sc[n][e] * scale : -INFINITY;
        tmax[e >> 1] = fmaxf(tmax[e >> 1], sc[n][e]);
      }
    }
    float corr[2], msafe[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      tmax[i] = fmaxf(tmax[i], __shfl_xor_sync(0xffffffffu, tmax[i], 1));
      tmax[i] = fmaxf(tmax[i], __shfl_xor_sync(0xffffffffu, tmax[i], 2));
      const float mn = fmaxf(m[i], tmax[i]);
      msafe[i] = mn == -INFINITY ? 0.f : mn;  // a row with no key yet keeps p = 0
      corr[i] = expf(m[i] - msafe[i]);
      m[i] = mn;
      l[i] *= corr[i];
    }
#pragma unroll
    for (int n = 0; n < kNt; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
#pragma unroll
    for (int n = 0; n < kKTile / 8; ++n) {
      const float e0 = expf(sc[n][0] - msafe[0]), e1 = expf(sc[n][1] - msafe[0]);
      const float e2 = expf(sc[n][2] - msafe[1]), e3 = expf(sc[n][3] - msafe[1]);
      l[0] += e0 + e1;
      l[1] += e2 + e3;
      *reinterpret_cast<float2*>(pw + g * kPP + n * 8 + 2 * t) = make_float2(e0, e1);
      *reinterpret_cast<float2*>(pw + (g + 8) * kPP + n * 8 + 2 * t) = make_float2(e2, e3);
    }
    __syncwarp();
    // O += P V.
#pragma unroll
    for (int kk = 0; kk < kKTile / 8; ++kk) {
      const float* pa = pw + g * kPP + kk * 8 + t;
      const float af[4] = {pa[0], pa[8 * kPP], pa[4], pa[8 * kPP + 4]};
      const mma::SplitA a(af);
      const float* vb = vs + (kk * 8 + t) * kVP + g;
#pragma unroll
      for (int n = 0; n < kNt; ++n) mma::Mma3xTf32(o[n], a, vb[n * 8], vb[4 * kVP + n * 8]);
    }
    __syncwarp();  // P reads done before the next tile overwrites it
  }
  if (!warp_active) return;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = r0 + 8 * i;
    if (row >= nq) continue;
    const float inv = 1.f / l[i];
    float* yr = p.y + (start + q0 + row) * p.y_st + static_cast<int64_t>(h) * HS + 2 * t;
#pragma unroll
    for (int n = 0; n < kNt; ++n)
      *reinterpret_cast<float2*>(yr + n * 8) = make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
  }
}

template <int HS, typename RT>
absl::Status LaunchAttnMma(const Params& p, int num_seqs, int64_t total_tokens,
                           cudaStream_t stream) {
  const int smem = AttnMmaSmemFloats<HS>() * 4;
  DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      SwaAttnMmaKernel<HS, RT>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int64_t blocks = num_seqs + total_tokens / kQTile + 1;
  SwaAttnMmaKernel<HS, RT>
      <<<dim3(static_cast<unsigned>(blocks), p.nh), kMmaThreads, smem, stream>>>(p, num_seqs);
  return LaunchStatus("SwaAttnMmaKernel");
}

// grid (tokens, G), block hs: ring rows of the last min(len, window) new positions.
template <typename RT>
__global__ void SwaRingWriteKernel(const Params p, int num_seqs) {
  const int64_t tok = blockIdx.x;
  const int g = blockIdx.y, t = threadIdx.x;
  const int s = SeqOf(p.cu, num_seqs, tok);
  const int64_t start = p.cu[s], len = p.cu[s + 1] - start;
  if (tok - start < len - p.window) return;  // overwritten later in this sequence
  const int64_t pos = SlotPosition(p, s) + (tok - start);
  char* base = p.pool + static_cast<int64_t>(p.slots[s]) * p.stride;
  RT* kring = reinterpret_cast<RT*>(base + p.k_off);
  RT* vring = reinterpret_cast<RT*>(base + p.v_off);
  const int qpg = p.nh / p.G;
  const int64_t r = ((pos % p.window) * p.G + g) * p.hs + t;
  const int64_t v_at =
      tok * p.qkv_st + static_cast<int64_t>(g) * (qpg + 2) * p.hs + (qpg + 1) * p.hs;
  RingElem<RT>::Store(kring + r, p.krot[(tok * p.G + g) * p.hs + t]);
  RingElem<RT>::Store(vring + r, p.qkv[v_at + t]);
}

// RoPE, attention (tensor cores or fp32 FMA), ring write: the three launches of one call.
template <typename RT>
absl::Status LaunchAll(const Params& p, int num_seqs, int64_t total_tokens, bool tensor_cores,
                       cudaStream_t stream) {
  const unsigned tokens = static_cast<unsigned>(total_tokens);
  SwaRopeKernel<<<dim3(tokens, p.nh + p.G), p.hs, 0, stream>>>(p, num_seqs);
  if (absl::Status st = LaunchStatus("SwaRopeKernel"); !st.ok()) return st;
  if (tensor_cores) {
    auto* launch = p.hs == 32   ? LaunchAttnMma<32, RT>
                   : p.hs == 64 ? LaunchAttnMma<64, RT>
                   : p.hs == 96 ? LaunchAttnMma<96, RT>
                                : LaunchAttnMma<128, RT>;
    if (absl::Status st = launch(p, num_seqs, total_tokens, stream); !st.ok()) return st;
  } else {
    const dim3 grid((tokens + kWarps - 1) / kWarps, p.nh);
    auto* kernel = p.hs == 32   ? SwaAttnKernel<1, RT>
                   : p.hs == 64 ? SwaAttnKernel<2, RT>
                   : p.hs == 96 ? SwaAttnKernel<3, RT>
                                : SwaAttnKernel<4, RT>;
    kernel<<<grid, kWarps * 32, 0, stream>>>(p, num_seqs, total_tokens);
    if (absl::Status st = LaunchStatus("SwaAttnKernel"); !st.ok()) return st;
  }
  SwaRingWriteKernel<RT><<<dim3(tokens, p.G), p.hs, 0, stream>>>(p, num_seqs);
  return LaunchStatus("SwaRingWriteKernel");
}

}  // namespace

int64_t SwaPrefillScratchFloats(const SwaDecodeShape& s, int64_t total_tokens) {
  return total_tokens * (s.n_head + s.n_query_groups) * s.head_size;
}

absl::Status LaunchSwaPrefill(const SwaDecodeShape& s, const SwaPrefillArgs& a,
                              cudaStream_t stream) {
  auto bad = [](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("swa prefill: ", what));
  };
  if (s.head_size != 32 && s.head_size != 64 && s.head_size != 96 && s.head_size != 128)
    return bad("head_size must be 32, 64, 96 or 128");
  if (s.n_query_groups <= 0 || s.n_head <= 0 || s.n_head % s.n_query_groups != 0)
    return bad("n_head must be a positive multiple of n_query_groups");
  if (s.window < 1) return bad("window must be >= 1");
  if (s.rope_dims < 0 || s.rope_dims % 2 != 0 || s.rope_dims > s.head_size)
    return bad("rope_dims must be even and <= head_size");
  if (a.num_seqs < 0 || a.total_tokens < 0) return bad("num_seqs and total_tokens must be >= 0");
  if (a.num_seqs == 0 || a.total_tokens == 0) return absl::OkStatus();
  if (a.total_tokens > 2147483647) return bad("total_tokens must fit a grid dimension");
  if (a.cu_seqlens == nullptr || a.slots == nullptr || a.pool == nullptr || a.qkv == nullptr ||
      a.y == nullptr)
    return bad("cu_seqlens, slots, pool, qkv and y must be set");
  if (a.qkv_stride < s.qkv_width() || a.y_stride < int64_t{s.n_head} * s.head_size)
    return bad("qkv_stride / y_stride too small");
  if (a.scratch == nullptr || a.scratch_floats < SwaPrefillScratchFloats(s, a.total_tokens))
    return bad("scratch too small (SwaPrefillScratchFloats)");
  const int64_t ring_bytes =
      int64_t{s.window} * s.n_query_groups * s.head_size * DTypeBytes(s.ring_type);
  if (a.num_slots <= 0 || a.k_ring_offset < 0 || a.v_ring_offset < 0 ||
      a.k_ring_offset % 16 != 0 || a.v_ring_offset % 16 != 0 ||
      a.k_ring_offset + ring_bytes > a.slot_stride_bytes ||
      a.v_ring_offset + ring_bytes > a.slot_stride_bytes)
    return bad("k_ring_offset / v_ring_offset misaligned or outside the slot");
  if (a.position_offset < 0 || a.position_offset % 8 != 0 ||
      a.position_offset + 8 > a.slot_stride_bytes || a.slot_stride_bytes % 16 != 0)
    return bad("position_offset / slot stride misaligned");

  Params p;
  p.nh = s.n_head;
  p.G = s.n_query_groups;
  p.hs = s.head_size;
  p.window = s.window;
  p.rope_dims = s.rope_dims;
  p.rope_base = s.rope_base;
  p.cu = a.cu_seqlens;
  p.slots = a.slots;
  p.pool = static_cast<char*>(a.pool);
  p.stride = a.slot_stride_bytes;
  p.k_off = a.k_ring_offset;
  p.v_off = a.v_ring_offset;
  p.pos_off = a.position_offset;
  p.qkv = a.qkv;
  p.qkv_st = a.qkv_stride;
  p.y = a.y;
  p.y_st = a.y_stride;
  p.qrot = a.scratch;
  p.krot = a.scratch + a.total_tokens * s.n_head * s.head_size;
  // The tensor-core kernel reads 16-byte vectors of qkv rows.
  const bool vec_ok = reinterpret_cast<uintptr_t>(a.qkv) % 16 == 0 && a.qkv_stride % 4 == 0 &&
                      reinterpret_cast<uintptr_t>(a.y) % 8 == 0 && a.y_stride % 2 == 0;
  const bool tensor_cores = a.tensor_cores && vec_ok;
  return s.ring_type == DType::kBF16
             ? LaunchAll<__nv_bfloat16>(p, a.num_seqs, a.total_tokens, tensor_cores, stream)
             : LaunchAll<float>(p, a.num_seqs, a.total_tokens, tensor_cores, stream);
}

}  // namespace deltaserve::cuda
