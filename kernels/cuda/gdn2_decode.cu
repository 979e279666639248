// GDN-2 decode: the launcher (argument checks, mode dispatch) and the kernels of versions v1-v4
// (fused v4, prepared, pipelined, the prep kernel and the streamed recurrence); the v5 fused,
// prep and one-launch streamed kernels are in gdn2_decode_v5.cu. See gdn2_decode.h for the
// contract and bench/NOTES.md for each version's measurements.
//
// v1-v4 fused kernel (Mode::kFusedV4):
// Work split: one thread block per (sequence, value head, split); a split owns DVS = dv/splits
// columns of the [dk, dv] state. The blocks of one (sequence, key head) -- all value heads of its
// group and all splits -- form one thread-block cluster, so that
//   * the q/k conv histories (shared by the whole cluster) are read by every block before any
//     block overwrites them (cluster barrier between the reads and the writes), and
//   * the output RMSNorm over a value head's dv columns sums the partial sums of its splits
//     through distributed shared memory.
// The state tile stays in registers between its read and its write: each thread holds ROWS rows
// of one 16-byte column group, loaded before the prologue (conv, norms, gates) runs so the loads
// are in flight while it computes.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/gdn2_decode.h"
#include "kernels/cuda/gdn2_decode_common.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

namespace cg = cooperative_groups;

using namespace gdn2_detail;

template <typename T, int DK, int DVS>
__global__ void __launch_bounds__(Tile<T, DK, DVS>::NT)
    Gdn2DecodeKernel(const Params p) {
  using TL = Tile<T, DK, DVS>;
  constexpr int VEC = TL::VEC, CG = TL::CG, NT = TL::NT, ROWS = TL::ROWS, RG = TL::RG,
                NW = TL::NW;

  static_assert(DVS <= NT, "the epilogue gives each thread at most one column");
  __shared__ float q_s[DK], k_s[DK], a_s[DK], bk_s[DK];
  __shared__ float wv_s[DVS], u_s[DVS], o_s[DVS];
  __shared__ float red_r[NW][DVS], red_o[NW][DVS];
  __shared__ float scratch[4][NW];
  __shared__ float partial_ss;

  const cg::cluster_group cluster = cg::this_cluster();
  const int cl = p.G * p.S;
  const int b = blockIdx.y;
  const int kh = blockIdx.x / cl;
  const int rank = blockIdx.x % cl;
  const int g = rank / p.S;
  const int s = rank % p.S;
  const int hv = kh * p.G + g;
  const int tid = threadIdx.x;

  if (p.overlap) {
    // A programmatic dependent launched after this grid may become resident now; it waits for
    // this grid's completion before touching what this grid writes.
    cudaTriggerProgrammaticLaunchCompletion();
    if (!p.state_ready) cudaGridDependencySynchronize();
  }

  // All blocks of a cluster share b, so they skip (or not) together: the barriers stay matched.
  // A skipping block still waits, so that the grid never completes before its predecessor.
  const int slot = p.slots[b];
  if (slot < 0 || slot >= p.num_slots) {
    if (p.overlap && p.state_ready) cudaGridDependencySynchronize();
    return;
  }
  char* base = p.pool + static_cast<int64_t>(slot) * p.slot_stride;

  // 1. Issue the state loads.
  T* state = reinterpret_cast<T*>(base + p.rec_off) + static_cast<int64_t>(hv) * DK * p.dv +
             s * DVS;
  const int cgi = tid % CG;
  const int rg = tid / CG;
  float st[ROWS][VEC];
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    StateVec<T>::Load(state + static_cast<int64_t>(rg + m * RG) * p.dv + cgi * VEC, st[m]);
  }
  // The inputs are the previous kernel's outputs: wait for it (a no-op without overlap).
  if (p.overlap && p.state_ready) cudaGridDependencySynchronize();
  const int col0 = hv * p.dv + s * DVS;
  // With overlap (the small-batch, latency-bound launch), the output gate operands are loaded
  // now, beside the prologue's loads, rather than after the state update. DVS <= NT.
  float gate_pre = 0.0f, onorm_pre = 0.0f;
  if (p.overlap && tid < DVS) {
    const int c = col0 + tid;
    const float zz = p.z_raw[static_cast<int64_t>(b) * p.z_st + c] + p.z_bias[c];
    gate_pre = p.gate_sigmoid ? Sigmoid(zz) : Silu(zz);
    onorm_pre = p.o_norm[s * DVS + tid];
  }

  // 2. Prologue: conv + SiLU of q, k (this key head) and v (this block's columns), gates.
  float* hq = reinterpret_cast<float*>(base + p.cq_off);
  float* hk = reinterpret_cast<float*>(base + p.ck_off);
  float* hvh = reinterpret_cast<float*>(base + p.cv_off);
  const float* qr = p.q_raw + static_cast<int64_t>(b) * p.q_st;
  const float* kr = p.k_raw + static_cast<int64_t>(b) * p.k_st;
  float sq = 0.0f, sk = 0.0f, sqk = 0.0f;
  for (int i = tid; i < DK; i += NT) {
    const int c = kh * DK + i;
    const float qv = ConvChannel(hq + c, p.key_dim, p.W, p.q_cw + c * p.W, qr[c]);
    const float kv = ConvChannel(hk + c, p.key_dim, p.W, p.k_cw + c * p.W, kr[c]);
    q_s[i] = qv;
    k_s[i] = kv;
    sq += qv * qv;
    sk += kv * kv;
    sqk += qv * kv;
    const float gdec = -__expf(p.a_log[kh]) *
                       Softplus(p.f_raw[static_cast<int64_t>(b) * p.f_st + c] + p.dt_bias[c]);
    a_s[i] = __expf(gdec);
    float beta = Sigmoid(p.b_raw[static_cast<int64_t>(b) * p.b_st + c]);
    if (p.neg_eig) beta *= 2.0f;
    bk_s[i] = beta;  // multiplied by the normalised k below
  }
  for (int j = tid; j < DVS; j += NT) {
    const int c = col0 + j;
    const float xv = p.v_raw[static_cast<int64_t>(b) * p.v_st + c];
    const float vv = ConvChannel(hvh + c, p.value_dim, p.W, p.v_cw + c * p.W, xv);
    ShiftHistory(hvh + c, p.value_dim, p.W, xv);  // v channels belong to this block alone
    wv_s[j] = Sigmoid(p.w_raw[static_cast<int64_t>(b) * p.w_st + c]) * vv;
  }
  sq = BlockSum<NW>(sq, scratch[0]);
  sk = BlockSum<NW>(sk, scratch[1]);
  sqk = BlockSum<NW>(sqk, scratch[2]);
  const float rq = rsqrtf(static_cast<float>(DK)) / sqrtf(sq + 1e-6f);
  const float rk = 1.0f / sqrtf(sk + 1e-6f);
  const float kq = sqk * rq * rk;
  for (int i = tid; i < DK; i += NT) {
    q_s[i] *= rq;
    const float kn = k_s[i] * rk;
    k_s[i] = kn;
    bk_s[i] *= kn;
  }
  __syncthreads();

  // 3. Decay and the two reductions over dk: r = S_bar^T (b*k), oq = S_bar^T q.
  float r[VEC], oq[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) r[v] = oq[v] = 0.0f;
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    const float a = a_s[i], bk = bk_s[i], qq = q_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const float sv = st[m][v] * a;
      st[m][v] = sv;
      r[v] += sv * bk;
      oq[v] += sv * qq;
    }
  }
  float ss =
      ColumnUpdate<NW, CG, VEC, DVS, NT>(r, oq, red_r, red_o, wv_s, kq, u_s, o_s, tid);
  ss = BlockSum<NW>(ss, scratch[3]);
  if (tid == 0) partial_ss = ss;

  // Barrier 1: every block has read the q/k histories and published its partial sum.
  cluster.sync();

  // 4. State update from the registers: S = S_bar + k u^T.
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    const float kk = k_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) st[m][v] += kk * u_s[cgi * VEC + v];
    StateVec<T>::Store(state + static_cast<int64_t>(i) * p.dv + cgi * VEC, st[m]);
  }

  // 5. This block's share of the q/k history shift.
  {
    const int per = DK / cl;
    for (int t = tid; t < 2 * per; t += NT) {
      const int which = t / per;  // 0: q, 1: k
      const int c = kh * DK + rank * per + (t % per);
      if (which == 0) {
        ShiftHistory(hq + c, p.key_dim, p.W, qr[c]);
      } else {
        ShiftHistory(hk + c, p.key_dim, p.W, kr[c]);
      }
    }
  }

  // 6. Output: gated RMSNorm over the value head's dv columns (splits g*S .. g*S+S-1).
  float total_ss = 0.0f;
  for (int r2 = 0; r2 < p.S; ++r2) {
    total_ss += *cluster.map_shared_rank(&partial_ss, g * p.S + r2);
  }
  const float inv = 1.0f / sqrtf(total_ss / static_cast<float>(p.dv) + p.eps);
  for (int j = tid; j < DVS; j += NT) {
    const int c = col0 + j;
    float act = gate_pre, on = onorm_pre;
    if (!p.overlap) {
      const float zz = p.z_raw[static_cast<int64_t>(b) * p.z_st + c] + p.z_bias[c];
      act = p.gate_sigmoid ? Sigmoid(zz) : Silu(zz);
      on = p.o_norm[s * DVS + j];
    }
    const float yv = o_s[j] * inv * on * act;
    if (p.y_bf16) {
      reinterpret_cast<__nv_bfloat16*>(p.y)[static_cast<int64_t>(b) * p.y_st + c] =
          __float2bfloat16_rn(yv);
    } else {
      reinterpret_cast<float*>(p.y)[static_cast<int64_t>(b) * p.y_st + c] = yv;
    }
  }
  // Barrier 2: no block leaves while another may still read its partial sum.
  cluster.sync();
}


// kPrepared, kernel 1: per (sequence, key head), conv + history shift for q, k and the group's
// v channels, norms, gates. Only this block touches these history channels: no ordering issue.
constexpr int kPrepThreads = 128;

__global__ void __launch_bounds__(kPrepThreads) Gdn2PrepKernel(const Params p, int dk) {
  // Overlapped launch (kStreamed with grouped heads): wait for the producer of the inputs first;
  // the trigger comes after the wait, because the recurrence kernel reads z without waiting.
  if (p.overlap) cudaGridDependencySynchronize();
  // Let the recurrence kernel start issuing its state loads right away.
  cudaTriggerProgrammaticLaunchCompletion();
  __shared__ float scratch[3][kPrepThreads / 32];
  const int kh = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
  const int slot = p.slots[b];
  if (slot < 0 || slot >= p.num_slots) return;
  char* base = p.pool + static_cast<int64_t>(slot) * p.slot_stride;
  float* hq = reinterpret_cast<float*>(base + p.cq_off);
  float* hk = reinterpret_cast<float*>(base + p.ck_off);
  float* hvh = reinterpret_cast<float*>(base + p.cv_off);
  const float* qr = p.q_raw + static_cast<int64_t>(b) * p.q_st;
  const float* kr = p.k_raw + static_cast<int64_t>(b) * p.k_st;
  float* rec = p.prep + (static_cast<int64_t>(b) * p.H + kh) * PrepStride(dk);
  float sq = 0.0f, sk = 0.0f, sqk = 0.0f;
  // Each thread owns channels tid, tid + 128, ... (<= 1 for dk <= 128); keep them in registers.
  float qv[2] = {0, 0}, kv[2] = {0, 0}, beta[2] = {0, 0};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = tid + r * kPrepThreads;
    if (i >= dk) break;
    const int c = kh * dk + i;
    qv[r] = ConvChannel(hq + c, p.key_dim, p.W, p.q_cw + c * p.W, qr[c]);
    kv[r] = ConvChannel(hk + c, p.key_dim, p.W, p.k_cw + c * p.W, kr[c]);
    ShiftHistory(hq + c, p.key_dim, p.W, qr[c]);
    ShiftHistory(hk + c, p.key_dim, p.W, kr[c]);
    sq += qv[r] * qv[r];
    sk += kv[r] * kv[r];
    sqk += qv[r] * kv[r];
    const float gdec = -__expf(p.a_log[kh]) *
                       Softplus(p.f_raw[static_cast<int64_t>(b) * p.f_st + c] + p.dt_bias[c]);
    rec[2 * dk + i] = __expf(gdec);
    beta[r] = Sigmoid(p.b_raw[static_cast<int64_t>(b) * p.b_st + c]) * (p.neg_eig ? 2.0f : 1.0f);
  }
  const int c0 = kh * p.G * p.dv;
  for (int j = tid; j < p.G * p.dv; j += kPrepThreads) {
    const int c = c0 + j;
    const float xv = p.v_raw[static_cast<int64_t>(b) * p.v_st + c];
    const float vv = ConvChannel(hvh + c, p.value_dim, p.W, p.v_cw + c * p.W, xv);
    ShiftHistory(hvh + c, p.value_dim, p.W, xv);
    float* wv = p.prep + static_cast<int64_t>(gridDim.y) * p.H * PrepStride(dk) +
                static_cast<int64_t>(b) * p.value_dim + c;
    *wv = Sigmoid(p.w_raw[static_cast<int64_t>(b) * p.w_st + c]) * vv;
  }
  sq = BlockSum<kPrepThreads / 32>(sq, scratch[0]);
  sk = BlockSum<kPrepThreads / 32>(sk, scratch[1]);
  sqk = BlockSum<kPrepThreads / 32>(sqk, scratch[2]);
  const float rq = rsqrtf(static_cast<float>(dk)) / sqrtf(sq + 1e-6f);
  const float rk = 1.0f / sqrtf(sk + 1e-6f);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = tid + r * kPrepThreads;
    if (i >= dk) break;
    rec[i] = qv[r] * rq;
    rec[dk + i] = kv[r] * rk;
    rec[3 * dk + i] = beta[r] * kv[r] * rk;
  }
  if (tid == 0) rec[4 * dk] = sqk * rq * rk;
}

// kPrepared, kernel 2: the recurrence and the output norm of one (sequence, value head, split).
template <typename T, int DK, int DVS>
__global__ void __launch_bounds__(Tile<T, DK, DVS>::NT)
    Gdn2RecurrenceKernel(const Params p) {
  using TL = Tile<T, DK, DVS>;
  constexpr int VEC = TL::VEC, CG = TL::CG, NT = TL::NT, ROWS = TL::ROWS, RG = TL::RG,
                NW = TL::NW;
  __shared__ float q_s[DK], k_s[DK], a_s[DK], bk_s[DK];
  __shared__ float wv_s[DVS], u_s[DVS], o_s[DVS];
  __shared__ float red_r[NW][DVS], red_o[NW][DVS];
  __shared__ float scratch[NW];
  __shared__ float partial_ss, kq_s;

  const int S = p.S;
  const int b = blockIdx.y;
  const int hv = blockIdx.x / S;
  const int s = blockIdx.x % S;
  const int kh = hv / p.G;
  const int tid = threadIdx.x;
  const int slot = p.slots[b];
  if (slot < 0 || slot >= p.num_slots) return;  // whole clusters skip together
  char* base = p.pool + static_cast<int64_t>(slot) * p.slot_stride;
  T* state = reinterpret_cast<T*>(base + p.rec_off) + static_cast<int64_t>(hv) * DK * p.dv +
             s * DVS;
  const int cgi = tid % CG;
  const int rg = tid / CG;
  float st[ROWS][VEC];
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    StateVec<T>::Load(state + static_cast<int64_t>(rg + m * RG) * p.dv + cgi * VEC, st[m]);
  }
  // The prep kernel's results (and its history writes) are visible after this.
  cudaGridDependencySynchronize();
  const float* rec = p.prep + (static_cast<int64_t>(b) * p.H + kh) * PrepStride(DK);
  for (int i = tid; i < DK; i += NT) {
    q_s[i] = rec[i];
    k_s[i] = rec[DK + i];
    a_s[i] = rec[2 * DK + i];
    bk_s[i] = rec[3 * DK + i];
  }
  const int col0 = hv * p.dv + s * DVS;
  const float* wvp = p.prep + static_cast<int64_t>(gridDim.y) * p.H * PrepStride(DK) +
                     static_cast<int64_t>(b) * p.value_dim + col0;
  for (int j = tid; j < DVS; j += NT) wv_s[j] = wvp[j];
  if (tid == 0) kq_s = rec[4 * DK];
  __syncthreads();
  const float kq = kq_s;

  float r[VEC], oq[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) r[v] = oq[v] = 0.0f;
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    const float a = a_s[i], bk = bk_s[i], qq = q_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const float sv = st[m][v] * a;
      st[m][v] = sv;
      r[v] += sv * bk;
      oq[v] += sv * qq;
    }
  }
  float ss =
      ColumnUpdate<NW, CG, VEC, DVS, NT>(r, oq, red_r, red_o, wv_s, kq, u_s, o_s, tid);
  ss = BlockSum<NW>(ss, scratch);  // ends with a barrier: u_s / o_s visible
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    const float kk = k_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) st[m][v] += kk * u_s[cgi * VEC + v];
    StateVec<T>::Store(state + static_cast<int64_t>(i) * p.dv + cgi * VEC, st[m]);
  }
  float total_ss = ss;
  cg::cluster_group cluster = cg::this_cluster();
  if (S > 1) {
    if (tid == 0) partial_ss = ss;
    cluster.sync();
    total_ss = 0.0f;
    for (int r2 = 0; r2 < S; ++r2) total_ss += *cluster.map_shared_rank(&partial_ss, r2);
  }
  const float inv = 1.0f / sqrtf(total_ss / static_cast<float>(p.dv) + p.eps);
  for (int j = tid; j < DVS; j += NT) {
    const int c = col0 + j;
    const float zz = p.z_raw[static_cast<int64_t>(b) * p.z_st + c] + p.z_bias[c];
    const float act = p.gate_sigmoid ? Sigmoid(zz) : Silu(zz);
    const float yv = o_s[j] * inv * p.o_norm[s * DVS + j] * act;
    if (p.y_bf16) {
      reinterpret_cast<__nv_bfloat16*>(p.y)[static_cast<int64_t>(b) * p.y_st + c] =
          __float2bfloat16_rn(yv);
    } else {
      reinterpret_cast<float*>(p.y)[static_cast<int64_t>(b) * p.y_st + c] = yv;
    }
  }
  if (S > 1) cluster.sync();
}

// kPipelined, kernel 2: persistent blocks, one (sequence, value head) item at a time with the
// whole state tile (splits = 1). While an item is computed and stored from registers, the next
// item's tile streams into shared memory (cp.async), so the device always has reads in flight.
// Each thread copies and later reads back exactly the 16-byte units it owns, so its own
// cp.async.wait_group makes the data visible to it without a block barrier.

template <typename T, int DK, int DVS>
__global__ void __launch_bounds__(Tile<T, DK, DVS>::NT, 2)
    Gdn2RecurrencePipelinedKernel(const Params p, int num_items) {
  using TL = Tile<T, DK, DVS>;
  constexpr int VEC = TL::VEC, CG = TL::CG, NT = TL::NT, ROWS = TL::ROWS, RG = TL::RG,
                NW = TL::NW;
  extern __shared__ __align__(16) unsigned char tile_smem[];
  T* tile = reinterpret_cast<T*>(tile_smem);
  __shared__ float q_s[DK], k_s[DK], a_s[DK], bk_s[DK];
  __shared__ float wv_s[DVS], u_s[DVS], o_s[DVS];
  __shared__ float red_r[NW][DVS], red_o[NW][DVS];
  __shared__ float scratch[NW];
  __shared__ float kq_s;
  const int tid = threadIdx.x;
  const int cgi = tid % CG;
  const int rg = tid / CG;
  const int batch = gridDim.y == 1 ? num_items / p.HV : 0;

  auto state_of = [&](int item, int slot) {
    const int hv = item % p.HV;
    char* base = p.pool + static_cast<int64_t>(slot) * p.slot_stride;
    return reinterpret_cast<T*>(base + p.rec_off) + static_cast<int64_t>(hv) * DK * p.dv;
  };
  auto prefetch = [&](int item) {
    const int slot = p.slots[item / p.HV];
    if (slot < 0 || slot >= p.num_slots) return;
    const T* g = state_of(item, slot);
#pragma unroll
    for (int m = 0; m < ROWS; ++m) {
      const int64_t off = static_cast<int64_t>(rg + m * RG) * DVS + cgi * VEC;
      CpAsync16(tile + off, g + static_cast<int64_t>(rg + m * RG) * p.dv + cgi * VEC);
    }
  };

  int item = blockIdx.x;
  if (item < num_items) prefetch(item);
  CpAsyncCommit();
  bool waited = false;
  for (; item < num_items; item += gridDim.x) {
    const int b = item / p.HV;
    const int hv = item % p.HV;
    const int kh = hv / p.G;
    const int slot = p.slots[b];
    const bool live = slot >= 0 && slot < p.num_slots;
    CpAsyncWait<0>();
    float st[ROWS][VEC];
#pragma unroll
    for (int m = 0; m < ROWS; ++m) {
      const T* src = tile + static_cast<int64_t>(rg + m * RG) * DVS + cgi * VEC;
      if constexpr (sizeof(T) == 4) {
        const float4 v = *reinterpret_cast<const float4*>(src);
        st[m][0] = v.x; st[m][1] = v.y; st[m][2] = v.z; st[m][3] = v.w;
      } else {
        const uint4 v = *reinterpret_cast<const uint4*>(src);
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(h[i]);
          st[m][2 * i] = f.x;
          st[m][2 * i + 1] = f.y;
        }
      }
    }
    const int next = item + static_cast<int>(gridDim.x);
    if (!waited) {
      cudaGridDependencySynchronize();
      waited = true;
    }
    __syncthreads();  // the previous item's shared vectors are no longer read
    if (!live) {
      if (next < num_items) prefetch(next);
      CpAsyncCommit();
      continue;
    }
    const float* rec = p.prep + (static_cast<int64_t>(b) * p.H + kh) * PrepStride(DK);
    for (int i = tid; i < DK; i += NT) {
      q_s[i] = rec[i];
      k_s[i] = rec[DK + i];
      a_s[i] = rec[2 * DK + i];
      bk_s[i] = rec[3 * DK + i];
    }
    const int col0 = hv * p.dv;
    const float* wvp = p.prep + static_cast<int64_t>(num_items / p.HV) * p.H * PrepStride(DK) +
                       static_cast<int64_t>(b) * p.value_dim + col0;
    for (int j = tid; j < DVS; j += NT) wv_s[j] = wvp[j];
    if (tid == 0) kq_s = rec[4 * DK];
    __syncthreads();
    const float kq = kq_s;
    float r[VEC], oq[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) r[v] = oq[v] = 0.0f;
#pragma unroll
    for (int m = 0; m < ROWS; ++m) {
      const int i = rg + m * RG;
      const float a = a_s[i], bk = bk_s[i], qq = q_s[i];
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        const float sv = st[m][v] * a;
        st[m][v] = sv;
        r[v] += sv * bk;
        oq[v] += sv * qq;
      }
    }
    // Every unit of the tile this thread owns is in registers now: refill its smem units.
    if (next < num_items) prefetch(next);
    CpAsyncCommit();
    float ss =
        ColumnUpdate<NW, CG, VEC, DVS, NT>(r, oq, red_r, red_o, wv_s, kq, u_s, o_s, tid);
    ss = BlockSum<NW>(ss, scratch);
    T* state = state_of(item, slot);
#pragma unroll
    for (int m = 0; m < ROWS; ++m) {
      const int i = rg + m * RG;
      const float kk = k_s[i];
#pragma unroll
      for (int v = 0; v < VEC; ++v) st[m][v] += kk * u_s[cgi * VEC + v];
      StateVec<T>::Store(state + static_cast<int64_t>(i) * p.dv + cgi * VEC, st[m]);
    }
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(p.dv) + p.eps);
    for (int j = tid; j < DVS; j += NT) {
      const int c = col0 + j;
      const float zz = p.z_raw[static_cast<int64_t>(b) * p.z_st + c] + p.z_bias[c];
      const float act = p.gate_sigmoid ? Sigmoid(zz) : Silu(zz);
      const float yv = o_s[j] * inv * p.o_norm[j] * act;
      if (p.y_bf16) {
        reinterpret_cast<__nv_bfloat16*>(p.y)[static_cast<int64_t>(b) * p.y_st + c] =
            __float2bfloat16_rn(yv);
      } else {
        reinterpret_cast<float*>(p.y)[static_cast<int64_t>(b) * p.y_st + c] = yv;
      }
    }
  }
  CpAsyncWait<0>();
  (void)batch;
}

// kStreamed, kernel 2: one block per (sequence, value head), whole tile (splits = 1). Thread 0
// starts one bulk asynchronous copy (TMA) of the contiguous [DK, DV] tile into shared memory,
// completing on an mbarrier; meanwhile the block loads its epilogue operands and the prep
// record. Pass 1 reads the tile from shared memory for the two reductions over dk; pass 2
// re-reads it and streams S_bar + k u^T to global memory. No state array lives in registers, so
// an SM holds as many blocks as shared memory allows (3 for fp32 128x128 tiles, 5 for bf16) and
// their copies overlap each other's compute and stores.
constexpr int kBulkChunkBytes = 16384;

template <typename T, int DK, int DV>
__global__ void __launch_bounds__(Tile<T, DK, DV>::NT, sizeof(T) == 4 ? 3 : 4)
    Gdn2RecurrenceStreamedKernel(const Params p) {
  using TL = Tile<T, DK, DV>;
  constexpr int VEC = TL::VEC, CG = TL::CG, NT = TL::NT, ROWS = TL::ROWS, RG = TL::RG,
                NW = TL::NW;
  static_assert(DV <= NT, "one output column per thread");
  constexpr int kTileBytes = DK * DV * static_cast<int>(sizeof(T));
  static_assert(kTileBytes % 16 == 0, "bulk copies move multiples of 16 bytes");
  extern __shared__ __align__(128) unsigned char streamed_smem[];
  const T* tile = reinterpret_cast<const T*>(streamed_smem);
  __shared__ float q_s[DK], k_s[DK], a_s[DK], bk_s[DK];
  __shared__ float u_s[DV];
  __shared__ float red[NW][DV];
  __shared__ float scratch[NW];
  __shared__ float kq_s;
  __shared__ __align__(8) uint64_t full;

  const int b = blockIdx.y;
  const int hv = blockIdx.x;
  const int kh = hv / p.G;
  const int tid = threadIdx.x;
  const int col0 = hv * DV;

  // Epilogue operands: written before the prep kernel started, so no wait is needed.
  float act = 0.0f, onorm = 0.0f;
  if (tid < DV) {
    const int c = col0 + tid;
    const float zz = p.z_raw[static_cast<int64_t>(b) * p.z_st + c] + p.z_bias[c];
    act = p.gate_sigmoid ? Sigmoid(zz) : Silu(zz);
    onorm = p.o_norm[tid];
  }
  const int slot = p.slots[b];
  if (slot < 0 || slot >= p.num_slots) return;  // before any barrier: the whole block leaves
  char* base = p.pool + static_cast<int64_t>(slot) * p.slot_stride;
  T* state = reinterpret_cast<T*>(base + p.rec_off) + static_cast<int64_t>(hv) * DK * DV;

  const uint32_t bar = SharedAddr(&full);
  if (tid == 0) {
    MbarInit(bar);
    MbarArriveExpectTx(bar, kTileBytes);
    const uint32_t dst = SharedAddr(streamed_smem);
#pragma unroll
    for (int off = 0; off < kTileBytes; off += kBulkChunkBytes) {
      const int n = kTileBytes - off < kBulkChunkBytes ? kTileBytes - off : kBulkChunkBytes;
      BulkCopy(dst + off, reinterpret_cast<const char*>(state) + off, n, bar);
    }
  }

  // The prep kernel's results are visible after this.
  cudaGridDependencySynchronize();
  const float* rec = p.prep + (static_cast<int64_t>(b) * p.H + kh) * PrepStride(DK);
  for (int i = tid; i < DK; i += NT) {
    q_s[i] = rec[i];
    k_s[i] = rec[DK + i];
    a_s[i] = rec[2 * DK + i];
    bk_s[i] = rec[3 * DK + i];
  }
  float wv = 0.0f;
  if (tid < DV) {
    wv = p.prep[static_cast<int64_t>(gridDim.y) * p.H * PrepStride(DK) +
                static_cast<int64_t>(b) * p.value_dim + col0 + tid];
  }
  if (tid == 0) kq_s = rec[4 * DK];
  __syncthreads();  // mbarrier initialised; prep vectors in shared memory
  MbarWaitParity(bar, 0);

  // Pass 1: decay and the two reductions over dk, r = S_bar^T (b*k) and oq = S_bar^T q.
  const int cgi = tid % CG;
  const int rg = tid / CG;
  float r[VEC], oq[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) r[v] = oq[v] = 0.0f;
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    float sv[VEC];
    SmemUnitToFloat<T>(tile + i * DV + cgi * VEC, sv);
    const float a = a_s[i], bk = bk_s[i], qq = q_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const float d = sv[v] * a;
      r[v] += d * bk;
      oq[v] += d * qq;
    }
  }
  WarpSumColumns<CG, VEC>(r, oq);
  const int warp = tid / 32, lane = tid % 32;
  // One reduction buffer, used twice: first r, then oq.
  if (lane < CG) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) red[warp][lane * VEC + v] = r[v];
  }
  __syncthreads();
  float rr = 0.0f;
  if (tid < DV) {
#pragma unroll
    for (int w = 0; w < NW; ++w) rr += red[w][tid];
  }
  __syncthreads();
  if (lane < CG) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) red[warp][lane * VEC + v] = oq[v];
  }
  __syncthreads();
  float o = 0.0f, ss = 0.0f;
  if (tid < DV) {
    float oo = 0.0f;
#pragma unroll
    for (int w = 0; w < NW; ++w) oo += red[w][tid];
    const float u = wv - rr;
    o = oo + kq_s * u;
    u_s[tid] = u;
    ss = o * o;
  }
  ss = BlockSum<NW>(ss, scratch);  // ends with a barrier: u_s visible

  // Pass 2: S = S_bar + k u^T, streamed out.
  float uu[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) uu[v] = u_s[cgi * VEC + v];
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    float sv[VEC];
    SmemUnitToFloat<T>(tile + i * DV + cgi * VEC, sv);
    const float a = a_s[i], kk = k_s[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) sv[v] = sv[v] * a + kk * uu[v];
    StateVec<T>::Store(state + static_cast<int64_t>(i) * DV + cgi * VEC, sv);
  }

  if (tid < DV) {
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(DV) + p.eps);
    const float yv = o * inv * onorm * act;
    const int64_t yi = static_cast<int64_t>(b) * p.y_st + col0 + tid;
    if (p.y_bf16) {
      reinterpret_cast<__nv_bfloat16*>(p.y)[yi] = __float2bfloat16_rn(yv);
    } else {
      reinterpret_cast<float*>(p.y)[yi] = yv;
    }
  }
}

template <typename T, int DK, int DV>
absl::Status LaunchStreamed(const Params& p, int batch, cudaStream_t stream) {
  using TL = Tile<T, DK, DV>;
  auto kernel = Gdn2RecurrenceStreamedKernel<T, DK, DV>;
  const int smem = DK * DV * static_cast<int>(sizeof(T));
  static bool attr_set = false;  // per instantiation; idempotent, so a benign race
  if (!attr_set) {
    DS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    attr_set = true;
  }
  if (p.prep_v5) {
    absl::Status ps = gdn2_detail::LaunchPrepV5(p, DK, DV, batch, stream);
    if (!ps.ok()) return ps;
  } else if (p.overlap) {
    cudaLaunchConfig_t pcfg = {};
    pcfg.gridDim = dim3(p.H, batch, 1);
    pcfg.blockDim = dim3(kPrepThreads, 1, 1);
    pcfg.stream = stream;
    cudaLaunchAttribute pattr[1];
    pattr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pattr[0].val.programmaticStreamSerializationAllowed = 1;
    pcfg.attrs = pattr;
    pcfg.numAttrs = 1;
    DS_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&pcfg, Gdn2PrepKernel, p, DK));
  } else {
    Gdn2PrepKernel<<<dim3(p.H, batch), kPrepThreads, 0, stream>>>(p, DK);
    DS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.HV, batch, 1);
  cfg.blockDim = dim3(TL::NT, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  DS_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, p));
  return LaunchStatus("Gdn2RecurrenceStreamedKernel");
}

template <typename T, int DK, int DVS>
absl::Status LaunchPipelined(const Params& p, int batch, cudaStream_t stream) {
  using TL = Tile<T, DK, DVS>;
  auto kernel = Gdn2RecurrencePipelinedKernel<T, DK, DVS>;
  const int smem = DK * DVS * static_cast<int>(sizeof(T));
  static bool attr_set = false;  // per instantiation; idempotent, so a benign race
  if (!attr_set) {
    DS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    attr_set = true;
  }
  int dev = 0, sms = 0, per_sm = 0;
  DS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev));
  DS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  DS_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, TL::NT, smem));
  const int items = batch * p.HV;
  const int grid = std::max(1, std::min(items, std::max(1, per_sm) * sms));
  Gdn2PrepKernel<<<dim3(p.H, batch), kPrepThreads, 0, stream>>>(p, DK);
  DS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid, 1, 1);
  cfg.blockDim = dim3(TL::NT, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  DS_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, p, items));
  return LaunchStatus("Gdn2RecurrencePipelinedKernel");
}

template <typename T, int DK, int DVS>
absl::Status LaunchPrepared(const Params& p, int batch, cudaStream_t stream) {
  using TL = Tile<T, DK, DVS>;
  Gdn2PrepKernel<<<dim3(p.H, batch), kPrepThreads, 0, stream>>>(p, DK);
  DS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.HV * p.S, batch, 1);
  cfg.blockDim = dim3(TL::NT, 1, 1);
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  attr[1].id = cudaLaunchAttributeClusterDimension;
  attr[1].val.clusterDim.x = p.S;
  attr[1].val.clusterDim.y = 1;
  attr[1].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.S > 1 ? 2 : 1;
  DS_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, Gdn2RecurrenceKernel<T, DK, DVS>, p));
  return LaunchStatus("Gdn2RecurrenceKernel");
}

template <typename T, int DK, int DVS>
absl::Status Launch(const Params& p, int batch, cudaStream_t stream) {
  if (p.pipelined) return LaunchPipelined<T, DK, DVS>(p, batch, stream);
  if (p.streamed) return LaunchStreamed<T, DK, DVS>(p, batch, stream);
  if (p.prep != nullptr) return LaunchPrepared<T, DK, DVS>(p, batch, stream);
  using TL = Tile<T, DK, DVS>;
  const int cl = p.G * p.S;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.H * cl, batch, 1);
  cfg.blockDim = dim3(TL::NT, 1, 1);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  int n = 0;
  if (cl > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cl;
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (p.overlap) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  DS_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, Gdn2DecodeKernel<T, DK, DVS>, p));
  return LaunchStatus("Gdn2DecodeKernel");
}

template <typename T, int DK>
absl::Status DispatchDvs(const Params& p, int dvs, int batch, cudaStream_t stream) {
  switch (dvs) {
    case 16: return Launch<T, DK, 16>(p, batch, stream);
    case 32: return Launch<T, DK, 32>(p, batch, stream);
    case 64: return Launch<T, DK, 64>(p, batch, stream);
    case 128: return Launch<T, DK, 128>(p, batch, stream);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("gdn2 decode: head_v_dim / splits = ", dvs, " not in {16,32,64,128}"));
  }
}

// dk = 32 (small test models) takes the two narrow column widths only.
template <typename T>
absl::Status DispatchDvsNarrow(const Params& p, int dvs, int batch, cudaStream_t stream) {
  switch (dvs) {
    case 16: return Launch<T, 32, 16>(p, batch, stream);
    case 32: return Launch<T, 32, 32>(p, batch, stream);
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "gdn2 decode: with head_k_dim 32, head_v_dim / splits = ", dvs, " not in {16,32}"));
  }
}

template <typename T>
absl::Status DispatchDk(const Params& p, int dk, int dvs, int batch, cudaStream_t stream) {
  switch (dk) {
    case 32: return DispatchDvsNarrow<T>(p, dvs, batch, stream);
    case 64: return DispatchDvs<T, 64>(p, dvs, batch, stream);
    case 128: return DispatchDvs<T, 128>(p, dvs, batch, stream);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("gdn2 decode: head_k_dim = ", dk, " not in {32,64,128}"));
  }
}

bool Aligned(const void* p, int64_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

int Gdn2DecodeAutoSplits(const Gdn2DecodeShape& shape, int batch, DType state_type,
                         bool overlap_launch, Gdn2DecodeArgs::Mode mode) {
  using Mode = Gdn2DecodeArgs::Mode;
  // v5 fused: one block per (sequence, value head) was fastest at every batch, plain and
  // overlapped (bench/NOTES.md v5); the whole-tile modes take 1.
  if (mode != Mode::kFusedV4 && mode != Mode::kPrepared) return 1;
  // v4: at least 64 blocks (32 for an overlapped launch); each split keeps >= 16 columns. Measured
  // on H200 at batch 1 (bench/NOTES.md): plain launch 4 splits, overlapped launch 2 splits.
  const int group = std::max(1, shape.num_v_heads / std::max(1, shape.num_heads));
  const int64_t blocks = static_cast<int64_t>(batch) * shape.num_v_heads;
  const int64_t min_blocks = overlap_launch ? 32 : 64;
  int splits = 1;
  while (splits * 2 * group <= kMaxCluster && shape.head_v_dim / (splits * 2) >= 16 &&
         shape.head_v_dim % (splits * 2) == 0 && blocks * splits < min_blocks) {
    splits *= 2;
  }
  (void)state_type;
  return splits;
}

int64_t Gdn2DecodePrepFloats(const Gdn2DecodeShape& shape, int batch) {
  return int64_t{batch} * (shape.num_heads * PrepStride(shape.head_k_dim) + shape.value_dim());
}

int64_t Gdn2DecodeBytes(const Gdn2DecodeShape& shape, int batch, DType state_type,
                        DType y_type) {
  const int64_t kd = shape.key_dim(), vd = shape.value_dim();
  const int64_t state = static_cast<int64_t>(shape.num_v_heads) * shape.head_k_dim *
                        shape.head_v_dim * DTypeBytes(state_type) * 2;
  const int64_t conv = static_cast<int64_t>(shape.conv_size - 1) * (2 * kd + vd) * 4 * 2;
  const int64_t inputs = (4 * kd + 3 * vd) * 4;
  const int64_t out = vd * DTypeBytes(y_type);
  return batch * (state + conv + inputs + out);
}

absl::Status LaunchGdn2Decode(const Gdn2DecodeShape& shape, const Gdn2DecodeArgs& a,
                              cudaStream_t stream) {
  const int H = shape.num_heads, HV = shape.num_v_heads, dk = shape.head_k_dim,
            dv = shape.head_v_dim, W = shape.conv_size;
  if (H <= 0 || HV <= 0 || HV % H != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("gdn2 decode: num_v_heads (", HV, ") must be a positive multiple of num_heads (", H, ")"));
  if (W < 1 || W > kMaxConv)
    return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: conv_size ", W, " not in [1, 8]"));
  if (a.batch < 0 || a.batch > 65535)
    return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: batch ", a.batch, " not in [0, 65535]"));
  if (a.batch == 0) return absl::OkStatus();
  const int G = HV / H;
  using Mode = Gdn2DecodeArgs::Mode;
  const bool v5_streamed_mode =
      a.mode == Mode::kStreamedBlockPerItem || a.mode == Mode::kStreamedPersistent;
  const bool whole_tile = a.mode == Mode::kPipelined || a.mode == Mode::kStreamed ||
                          a.mode == Mode::kStreamedV4 || v5_streamed_mode;
  const int S = whole_tile
                    ? 1
                    : (a.splits > 0 ? a.splits
                                    : Gdn2DecodeAutoSplits(shape, a.batch, a.state_type,
                                                           a.overlap_launch, a.mode));
  if (whole_tile && a.splits > 1)
    return absl::InvalidArgumentError(
        "gdn2 decode: the pipelined and streamed modes take splits = 1");
  if (dv % S != 0)
    return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: splits ", S, " must divide head_v_dim ", dv));
  const bool pipelined = a.mode == Mode::kPipelined;
  if (v5_streamed_mode && G != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "gdn2 decode: the one-launch streamed modes need num_v_heads == num_heads, got ", HV,
        " and ", H));
  // kStreamed: the v5 prep kernel, then the streamed recurrence (bench/NOTES.md v5: folding the
  // prep work into the recurrence blocks, kStreamedBlockPerItem / kStreamedPersistent, measured
  // slower).
  const bool streamed_v5 = v5_streamed_mode;
  const bool streamed = a.mode == Mode::kStreamedV4 || a.mode == Mode::kStreamed;
  const bool fused_v5 = a.mode == Mode::kFused;
  const bool prepared = a.mode == Mode::kPrepared || pipelined || streamed;
  if (a.state_ready && !a.overlap_launch)
    return absl::InvalidArgumentError("gdn2 decode: state_ready requires overlap_launch");
  if (a.overlap_launch && a.mode != Mode::kFused && a.mode != Mode::kFusedV4 &&
      a.mode != Mode::kStreamed && !v5_streamed_mode)
    return absl::InvalidArgumentError(
        "gdn2 decode: overlap_launch applies to the fused and streamed modes only");
  if (!prepared && !streamed_v5 && G * S > kMaxCluster)
    return absl::InvalidArgumentError(absl::StrCat(
        "gdn2 decode: (num_v_heads/num_heads) * splits = ", G * S, " exceeds the cluster limit 8"));
  if (!prepared && !streamed_v5 && dk % (G * S) != 0)
    return absl::InvalidArgumentError("gdn2 decode: head_k_dim must be a multiple of the cluster size");
  if (a.slots == nullptr || a.pool == nullptr)
    return absl::InvalidArgumentError("gdn2 decode: slots and pool are required");
  const void* required[] = {a.q_raw, a.k_raw, a.v_raw, a.b_raw, a.w_raw, a.f_raw, a.z_raw,
                            a.q_conv_w, a.k_conv_w, a.v_conv_w, a.a_log, a.dt_bias,
                            a.z_bias, a.o_norm, a.y};
  for (const void* ptr : required) {
    if (ptr == nullptr) return absl::InvalidArgumentError("gdn2 decode: a required tensor is null");
  }
  const bool fold = a.gate_rank != 0;
  if (fold) {
    if (a.mode != Mode::kFused)
      return absl::InvalidArgumentError("gdn2 decode: gate_rank applies to the fused mode only");
    if (a.gate_rank < 8 || a.gate_rank > 128 || a.gate_rank % 8 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "gdn2 decode: gate_rank ", a.gate_rank, " must be a multiple of 8 in [8, 128]"));
    if (a.f_up == nullptr || a.z_up == nullptr)
      return absl::InvalidArgumentError("gdn2 decode: gate_rank > 0 needs f_up and z_up");
    if (!Aligned(a.f_up, 16) || !Aligned(a.z_up, 16))
      return absl::InvalidArgumentError("gdn2 decode: f_up and z_up must be 16-byte aligned");
  }
  // Strides at the boundary: each region must fit inside the slot, and rows must not overlap.
  const int64_t kd = shape.key_dim(), vd = shape.value_dim();
  const int64_t state_bytes = static_cast<int64_t>(HV) * dk * dv * DTypeBytes(a.state_type);
  struct Region { const char* name; int64_t off, bytes, align; };
  const Region regions[] = {
      {"recurrent_offset", a.recurrent_offset, state_bytes, 16},
      {"conv_q_offset", a.conv_q_offset, (W - 1) * kd * 4, 4},
      {"conv_k_offset", a.conv_k_offset, (W - 1) * kd * 4, 4},
      {"conv_v_offset", a.conv_v_offset, (W - 1) * vd * 4, 4}};
  if (a.slot_stride_bytes <= 0 || a.slot_stride_bytes % 16 != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "gdn2 decode: slot_stride_bytes ", a.slot_stride_bytes, " must be a positive multiple of 16"));
  if (!Aligned(a.pool, 16)) return absl::InvalidArgumentError("gdn2 decode: pool must be 16-byte aligned");
  for (const Region& r : regions) {
    if (r.off < 0 || r.off % r.align != 0 || r.off + r.bytes > a.slot_stride_bytes)
      return absl::InvalidArgumentError(absl::StrCat(
          "gdn2 decode: ", r.name, " = ", r.off, " (", r.bytes, " bytes) does not fit a ",
          a.slot_stride_bytes, "-byte slot with alignment ", r.align));
  }
  struct Stride { const char* name; int64_t stride, width; };
  const Stride strides[] = {{"q_stride", a.q_stride, kd}, {"k_stride", a.k_stride, kd},
                            {"v_stride", a.v_stride, vd}, {"b_stride", a.b_stride, kd},
                            {"w_stride", a.w_stride, vd},
                            {"f_stride", a.f_stride, fold ? a.gate_rank : kd},
                            {"z_stride", a.z_stride, fold ? a.gate_rank : vd},
                            {"y_stride", a.y_stride, vd}};
  for (const Stride& st : strides) {
    if (a.batch > 1 && st.stride < st.width)
      return absl::InvalidArgumentError(absl::StrCat("gdn2 decode: ", st.name, " = ", st.stride,
                                                     " is smaller than the row width ", st.width));
  }
  if (a.num_slots <= 0) return absl::InvalidArgumentError("gdn2 decode: num_slots must be positive");
  if (prepared) {
    if (a.prep == nullptr || a.prep_floats < Gdn2DecodePrepFloats(shape, a.batch))
      return absl::InvalidArgumentError(absl::StrCat(
          "gdn2 decode: prepared mode needs prep scratch of ", Gdn2DecodePrepFloats(shape, a.batch),
          " floats, got ", a.prep_floats));
    if (S > kMaxCluster)
      return absl::InvalidArgumentError("gdn2 decode: splits exceed the cluster limit 8");
  }

  Params p;
  p.H = H; p.HV = HV; p.dv = dv; p.W = W; p.G = G; p.S = S;
  p.neg_eig = shape.allow_neg_eigval;
  p.gate_sigmoid = shape.gate_sigmoid;
  p.eps = shape.norm_eps;
  p.key_dim = static_cast<int>(kd);
  p.value_dim = static_cast<int>(vd);
  p.slots = a.slots;
  p.pool = static_cast<char*>(a.pool);
  p.num_slots = a.num_slots;
  p.slot_stride = a.slot_stride_bytes;
  p.rec_off = a.recurrent_offset;
  p.cq_off = a.conv_q_offset;
  p.ck_off = a.conv_k_offset;
  p.cv_off = a.conv_v_offset;
  p.q_raw = a.q_raw; p.k_raw = a.k_raw; p.v_raw = a.v_raw; p.b_raw = a.b_raw;
  p.w_raw = a.w_raw; p.f_raw = a.f_raw; p.z_raw = a.z_raw;
  p.q_st = a.q_stride; p.k_st = a.k_stride; p.v_st = a.v_stride; p.b_st = a.b_stride;
  p.w_st = a.w_stride; p.f_st = a.f_stride; p.z_st = a.z_stride;
  p.q_cw = a.q_conv_w; p.k_cw = a.k_conv_w; p.v_cw = a.v_conv_w;
  p.a_log = a.a_log; p.dt_bias = a.dt_bias; p.z_bias = a.z_bias; p.o_norm = a.o_norm;
  p.y = a.y;
  p.y_st = a.y_stride;
  p.y_bf16 = a.y_type == DType::kBF16;
  p.prep = prepared ? a.prep : nullptr;
  p.pipelined = pipelined;
  p.streamed = streamed;
  p.persistent = a.mode == Mode::kStreamedPersistent;
  p.prep_v5 = a.mode == Mode::kStreamed;
  p.overlap = a.overlap_launch;
  p.state_ready = a.state_ready;
  p.gate_rank = a.gate_rank;
  p.f_up = static_cast<const uint16_t*>(a.f_up);
  p.z_up = static_cast<const uint16_t*>(a.z_up);

  const int dvs = dv / S;
  if (streamed_v5) return gdn2_detail::LaunchStreamedV5(p, dk, dv, a.state_type, a.batch, stream);
  if (fused_v5) return gdn2_detail::LaunchFusedV5(p, dk, dvs, a.state_type, a.batch, stream);
  switch (a.state_type) {
    case DType::kF32: return DispatchDk<float>(p, dk, dvs, a.batch, stream);
    case DType::kBF16: return DispatchDk<__nv_bfloat16>(p, dk, dvs, a.batch, stream);
  }
  return absl::InvalidArgumentError("gdn2 decode: unknown state_type");
}

}  // namespace deltaserve::cuda
