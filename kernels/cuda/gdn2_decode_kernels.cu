// GDN-2 decode kernels (gdn2_decode.h; "v5" in bench/NOTES.md): Mode::kFused and the prep
// kernel of Mode::kStreamed. They share a prologue (causal conv of q, k, v; gates) split in two
// halves:
//   * Issue/Load, before the wait of an overlapped launch: histories and weights (allowed with
//     state_ready: the preceding kernel writes neither), and
//   * Finish, after it: the raw inputs, the current-token tap, SiLU, gates, history shift.
// Half of the block's threads take the q/k channels (and the three norm partial sums), the other
// half the gates and the v columns. The q/k norms are never applied to the vectors: the two
// reductions over dk run on the unnormalised q^, k^ and are scaled afterwards
// (r = rk * S_bar^T (b*k^), S_bar^T q = rq * S_bar^T q^), so the prologue needs one block
// reduction (three sums at once) instead of four.
//
// Fused (state tile in registers, blocks of one (sequence, key head) form a cluster): each block
// pushes its warps' output-norm partial sums into the shared memory of the blocks of its value
// head, arrives on the cluster barrier, stores its state and waits only then; after the wait no
// block touches another's shared memory, so one barrier orders the q/k history reads before the
// shift (writes) and makes the partial sums visible.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/gdn2_decode_common.cuh"
#include "kernels/cuda/ready_word.cuh"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda::gdn2_detail {
namespace {

namespace cg = cooperative_groups;

// Sum over the history taps (all but the current token's) of one conv channel.
__device__ __forceinline__ float HistoryConv(const float* hist, int64_t row_stride, int W,
                                             const float* wts) {
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxConv - 1; ++j) {
    if (j < W - 1) acc += wts[j] * hist[j * row_stride];
  }
  return acc;
}

// Sums a, b, c over the block with one barrier (single use of `scratch`); every thread gets the
// totals. The barrier also publishes the shared-memory writes made before the call.
template <int NW>
__device__ __forceinline__ void BlockSum3(float& a, float& b, float& c, float (*scratch)[NW]) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
    c += __shfl_xor_sync(0xffffffffu, c, o);
  }
  const int warp = threadIdx.x / 32;
  if ((threadIdx.x & 31) == 0) {
    scratch[0][warp] = a;
    scratch[1][warp] = b;
    scratch[2][warp] = c;
  }
  __syncthreads();
  a = b = c = 0.0f;
#pragma unroll
  for (int w = 0; w < NW; ++w) {
    a += scratch[0][w];
    b += scratch[1][w];
    c += scratch[2][w];
  }
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Gate fold (Params::gate_rank > 0): the block's rows of the up-projections in dynamic shared
// memory, f_up rows kh*DK.. (DK rows) then z_up rows col0.. (DVS rows), gate_rank / 8 16-byte
// chunks per row; chunk j of row r sits at j ^ (r & 7) when a row has a multiple of 8 chunks, so
// reads of one row per thread are free of bank conflicts. After them, the inputs f0 | g0
// (gate_rank floats each, rounded to bf16 as the separate product would round them).
struct GateFold {
  const uint4* w = nullptr;  // nullptr: no fold, f and z~ come from f_raw / z_raw
  const float* u = nullptr;
  int nc = 0;  // chunks per row

  __host__ __device__ static constexpr int Swizzle(int row, int nc) {
    return nc % 8 == 0 ? (row & 7) : 0;
  }
  static constexpr int SmemBytes(int dk, int dvs, int rank) {
    return (dk + dvs) * rank * 2 + 2 * rank * 4;
  }
  // Staged row `row` (f_up rows first) times input `which` (0: f0, 1: g0), fp32 sums.
  __device__ __forceinline__ float Dot(int row, int which) const {
    const uint4* wr = w + row * nc;
    const float4* x = reinterpret_cast<const float4*>(u + which * nc * 8);
    const int m = Swizzle(row, nc);
    float a0 = 0.0f, a1 = 0.0f;
    for (int j = 0; j < nc; ++j) {
      const uint4 q = wr[j ^ m];
      const float4 x0 = x[2 * j], x1 = x[2 * j + 1];
      a0 = fmaf(__uint_as_float(q.x << 16), x0.x, a0);
      a1 = fmaf(__uint_as_float(q.x & 0xffff0000u), x0.y, a1);
      a0 = fmaf(__uint_as_float(q.y << 16), x0.z, a0);
      a1 = fmaf(__uint_as_float(q.y & 0xffff0000u), x0.w, a1);
      a0 = fmaf(__uint_as_float(q.z << 16), x1.x, a0);
      a1 = fmaf(__uint_as_float(q.z & 0xffff0000u), x1.y, a1);
      a0 = fmaf(__uint_as_float(q.w << 16), x1.z, a0);
      a1 = fmaf(__uint_as_float(q.w & 0xffff0000u), x1.w, a1);
    }
    return a0 + a1;
  }
};

// Starts the copies of the block's up-projection rows into `smem` (constant weights: before any
// wait) and points `fold` at them; a no-op without a fold.
template <int DK, int DVS, int NT>
__device__ __forceinline__ void IssueGateFold(const Params& p, int kh, int col0, uint4* smem,
                                              int tid, GateFold& fold) {
  if (p.gate_rank <= 0) return;
  const int nc = p.gate_rank / 8;
  for (int i = tid; i < (DK + DVS) * nc; i += NT) {
    const int row = i / nc, j = i - row * nc;
    const uint16_t* src = row < DK ? p.f_up + static_cast<int64_t>(kh * DK + row) * p.gate_rank
                                   : p.z_up + static_cast<int64_t>(col0 + row - DK) * p.gate_rank;
    CpAsync16(smem + row * nc + (j ^ GateFold::Swizzle(row, nc)), src + 8 * j);
  }
  CpAsyncCommit();
  fold.w = smem;
  fold.u = reinterpret_cast<const float*>(smem + (DK + DVS) * nc);
  fold.nc = nc;
}

// After the wait: stages row b's inputs f0 | g0 behind the weights and waits for the weight
// copies; ends with a block barrier. A no-op without a fold.
template <int NT>
__device__ __forceinline__ void FinishGateFold(const Params& p, int b, int tid,
                                               const GateFold& fold) {
  if (fold.w == nullptr) return;
  float* u = const_cast<float*>(fold.u);
  const int r = p.gate_rank;
  for (int i = tid; i < 2 * r; i += NT) {
    const float x = i < r ? p.f_raw[static_cast<int64_t>(b) * p.f_st + i]
                          : p.z_raw[static_cast<int64_t>(b) * p.z_st + i - r];
    u[i] = __bfloat162float(__float2bfloat16_rn(x));
  }
  CpAsyncWait<0>();
  __syncthreads();
}

// Shared vectors the prologue fills: q^, k^ (conv + SiLU, not normalised), alpha, beta (DK
// each) and w*v (the block's DVS columns).
template <int DK, int DVS>
struct PrologueSmem {
  float q[DK], k[DK], a[DK], be[DK];
  float wv[DVS];
};

// Per-thread prologue state between Load and Finish. Threads [0, NT/2) own q/k channels
// i = tid + n*NT/2; threads [NT/2, NT) own gate channels i and v columns j = tid - NT/2 + n*NT/2.
template <int DK, int DVS, int NT>
struct Prologue {
  static constexpr int HALF = NT / 2;
  static constexpr int QK_IT = (DK + HALF - 1) / HALF;
  static constexpr int V_IT = (DVS + HALF - 1) / HALF;
  float pq[QK_IT], pk[QK_IT], wq[QK_IT], wk[QK_IT], dtb[QK_IT];
  float pv[V_IT], wvl[V_IT];
  float neg_a = 0.0f;

  // Reads only histories and weights. col0 = first value column of the block (hv*dv + s*DVS).
  __device__ __forceinline__ void Load(const Params& p, const char* base, int kh, int col0,
                                       int tid) {
    if (tid < HALF) {
      const float* hq = reinterpret_cast<const float*>(base + p.cq_off);
      const float* hk = reinterpret_cast<const float*>(base + p.ck_off);
#pragma unroll
      for (int n = 0; n < QK_IT; ++n) {
        const int i = tid + n * HALF;
        if (i < DK) {
          const int c = kh * DK + i;
          pq[n] = HistoryConv(hq + c, p.key_dim, p.W, p.q_cw + c * p.W);
          pk[n] = HistoryConv(hk + c, p.key_dim, p.W, p.k_cw + c * p.W);
          wq[n] = p.q_cw[c * p.W + p.W - 1];
          wk[n] = p.k_cw[c * p.W + p.W - 1];
        }
      }
    } else {
      const int t = tid - HALF;
      const float* hv = reinterpret_cast<const float*>(base + p.cv_off);
      neg_a = -__expf(p.a_log[kh]);
#pragma unroll
      for (int n = 0; n < QK_IT; ++n) {
        const int i = t + n * HALF;
        if (i < DK) dtb[n] = p.dt_bias[kh * DK + i];
      }
#pragma unroll
      for (int n = 0; n < V_IT; ++n) {
        const int j = t + n * HALF;
        if (j < DVS) {
          const int c = col0 + j;
          pv[n] = HistoryConv(hv + c, p.value_dim, p.W, p.v_cw + c * p.W);
          wvl[n] = p.v_cw[c * p.W + p.W - 1];
        }
      }
    }
  }

  // Reads the raw inputs of row b, fills `sm`, shifts the block's v history columns (and the
  // q/k channels too when shift_qk: no other block reads them) and adds this thread's shares of
  // |q^|^2, |k^|^2 and q^.k^ to sq, sk, sqk.
  __device__ __forceinline__ void Finish(const Params& p, char* base, int b, int kh, int col0,
                                         int tid, bool shift_qk, const GateFold& fold,
                                         PrologueSmem<DK, DVS>& sm, float& sq, float& sk,
                                         float& sqk) {
    // Every raw input of the thread is loaded before any is used or any history is written
    // (the history stores could alias them for the compiler): one memory round trip.
    if (tid < HALF) {
      float* hq = reinterpret_cast<float*>(base + p.cq_off);
      float* hk = reinterpret_cast<float*>(base + p.ck_off);
      const int64_t qr = int64_t{b} * p.q_st, kr = int64_t{b} * p.k_st;
      float xq[QK_IT], xk[QK_IT];
#pragma unroll
      for (int n = 0; n < QK_IT; ++n) {
        const int c = kh * DK + tid + n * HALF;
        xq[n] = tid + n * HALF < DK ? LoadRaw(p.q_raw, qr + c, p.raw_bf16) : 0.0f;
        xk[n] = tid + n * HALF < DK ? LoadRaw(p.k_raw, kr + c, p.raw_bf16) : 0.0f;
      }
#pragma unroll
      for (int n = 0; n < QK_IT; ++n) {
        const int i = tid + n * HALF;
        if (i < DK) {
          const int c = kh * DK + i;
          const float qv = Silu(pq[n] + wq[n] * xq[n]);
          const float kv = Silu(pk[n] + wk[n] * xk[n]);
          sm.q[i] = qv;
          sm.k[i] = kv;
          sq += qv * qv;
          sk += kv * kv;
          sqk += qv * kv;
          if (shift_qk) {
            ShiftHistory(hq + c, p.key_dim, p.W, xq[n]);
            ShiftHistory(hk + c, p.key_dim, p.W, xk[n]);
          }
        }
      }
    } else {
      const int t = tid - HALF;
      float* hv = reinterpret_cast<float*>(base + p.cv_off);
      float f[QK_IT], bb[QK_IT], x[V_IT], w[V_IT];
#pragma unroll
      for (int n = 0; n < QK_IT; ++n) {
        const int i = t + n * HALF, c = kh * DK + i;
        f[n] = i < DK && fold.w == nullptr ? p.f_raw[static_cast<int64_t>(b) * p.f_st + c] : 0.0f;
        bb[n] = i < DK ? LoadRaw(p.b_raw, int64_t{b} * p.b_st + c, p.raw_bf16) : 0.0f;
      }
#pragma unroll
      for (int n = 0; n < V_IT; ++n) {
        const int j = t + n * HALF, c = col0 + j;
        x[n] = j < DVS ? LoadRaw(p.v_raw, int64_t{b} * p.v_st + c, p.raw_bf16) : 0.0f;
        w[n] = j < DVS ? LoadRaw(p.w_raw, int64_t{b} * p.w_st + c, p.raw_bf16) : 0.0f;
      }
#pragma unroll
      for (int n = 0; n < QK_IT; ++n) {
        const int i = t + n * HALF;
        if (i < DK) {
          const float fi = fold.w != nullptr ? fold.Dot(i, 0) : f[n];
          sm.a[i] = __expf(neg_a * Softplus(fi + dtb[n]));
          sm.be[i] = Sigmoid(bb[n]) * (p.neg_eig ? 2.0f : 1.0f);
        }
      }
#pragma unroll
      for (int n = 0; n < V_IT; ++n) {
        const int j = t + n * HALF;
        if (j < DVS) {
          const int c = col0 + j;
          const float vv = Silu(pv[n] + wvl[n] * x[n]);
          ShiftHistory(hv + c, p.value_dim, p.W, x[n]);
          sm.wv[j] = Sigmoid(w[n]) * vv;
        }
      }
    }
  }
};

__device__ __forceinline__ void ClusterArriveRelease() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void ClusterWaitAcquire() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void StoreY(const Params& p, int b, int c, float yv) {
  const int64_t yi = static_cast<int64_t>(b) * p.y_st + c;
  if (p.y_bf16) {
    reinterpret_cast<__nv_bfloat16*>(p.y)[yi] = __float2bfloat16_rn(yv);
  } else {
    reinterpret_cast<float*>(p.y)[yi] = yv;
  }
}

template <typename T, int DK, int DVS>
__global__ void __launch_bounds__(Tile<T, DK, DVS>::NT) Gdn2FusedKernel(const Params p) {
  using TL = Tile<T, DK, DVS>;
  constexpr int VEC = TL::VEC, CG = TL::CG, NT = TL::NT, ROWS = TL::ROWS, RG = TL::RG,
                NW = TL::NW;
  static_assert(DVS <= NT, "the epilogue gives each thread at most one column");
  __shared__ PrologueSmem<DK, DVS> sm;
  __shared__ float u_s[DVS];
  __shared__ float red_r[NW][DVS], red_o[NW][DVS];
  __shared__ float sums[3][NW];
  __shared__ float ss_all[kMaxCluster][NW];  // [cluster rank][warp] output-norm partials
  extern __shared__ uint4 fold_smem[];        // GateFold, with gate_rank > 0

  const int cl = p.G * p.S;
  const int b = blockIdx.y;
  const int kh = blockIdx.x / cl;
  const int rank = blockIdx.x % cl;
  const int g = rank / p.S;
  const int s = rank % p.S;
  const int hv = kh * p.G + g;
  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;

  if (p.overlap) {
    cudaTriggerProgrammaticLaunchCompletion();
    if (!p.state_ready) cudaGridDependencySynchronize();
  }
  // All blocks of a cluster share b, so they skip (or not) together: the barrier stays matched.
  // A skipping block still waits, so that the grid never completes before its predecessor.
  const int slot = p.slots[b];
  if (slot < 0 || slot >= p.num_slots) {
    if (p.overlap && p.state_ready) cudaGridDependencySynchronize();
    return;
  }
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
  const int col0 = hv * p.dv + s * DVS;
  Prologue<DK, DVS, NT> pro;
  pro.Load(p, base, kh, col0, tid);
  GateFold fold;
  IssueGateFold<DK, DVS, NT>(p, kh, col0, fold_smem, tid, fold);
  float zb = 0.0f, on = 0.0f;
  if (tid < DVS) {
    zb = p.z_bias[col0 + tid];
    on = p.o_norm[s * DVS + tid];
  }
  // The raw inputs are the previous kernel's outputs (a no-op without overlap).
  if (p.overlap && p.state_ready) cudaGridDependencySynchronize();
  FinishGateFold<NT>(p, b, tid, fold);
  // The output gate's input; used in the epilogue only, so its load overlaps the prologue's.
  float zz = 0.0f;
  if (tid < DVS) {
    zz = fold.w != nullptr ? fold.Dot(DK + tid, 1)
                           : p.z_raw[static_cast<int64_t>(b) * p.z_st + col0 + tid];
  }
  float sq = 0.0f, sk = 0.0f, sqk = 0.0f;
  pro.Finish(p, base, b, kh, col0, tid, /*shift_qk=*/cl == 1, fold, sm, sq, sk, sqk);
  BlockSum3<NW>(sq, sk, sqk, sums);
  const float rq = rsqrtf(static_cast<float>(DK)) / sqrtf(sq + 1e-6f);
  const float rk = 1.0f / sqrtf(sk + 1e-6f);
  const float kq = sqk * rq * rk;

  // Decay and the two reductions over dk on the unnormalised vectors.
  float r[VEC], oq[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) r[v] = oq[v] = 0.0f;
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    const float a = sm.a[i], bk = sm.be[i] * sm.k[i], qq = sm.q[i];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const float sv = st[m][v] * a;
      st[m][v] = sv;
      r[v] += sv * bk;
      oq[v] += sv * qq;
    }
  }
  WarpSumColumns<CG, VEC>(r, oq);
  if (lane < CG) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      red_r[warp][lane * VEC + v] = r[v];
      red_o[warp][lane * VEC + v] = oq[v];
    }
  }
  __syncthreads();
  float o = 0.0f, ss = 0.0f;
  if (tid < DVS) {
    float rr = 0.0f, oo = 0.0f;
#pragma unroll
    for (int w = 0; w < NW; ++w) {
      rr += red_r[w][tid];
      oo += red_o[w][tid];
    }
    const float u = sm.wv[tid] - rk * rr;
    o = rq * oo + kq * u;
    u_s[tid] = u;
    ss = o * o;
  }
  ss = WarpSum(ss);
  if (cl > 1) {
    // Push this warp's partial into every block of this value head (this one included).
    if (lane == 0) {
      cg::cluster_group cluster = cg::this_cluster();
      for (int r2 = g * p.S; r2 < (g + 1) * p.S; ++r2) {
        *cluster.map_shared_rank(&ss_all[rank][warp], r2) = ss;
      }
    }
    // Released: the pushes above and every read of the shared q/k histories.
    ClusterArriveRelease();
  } else if (lane == 0) {
    ss_all[0][warp] = ss;
  }
  __syncthreads();  // u_s (and, without a cluster, ss_all) visible

  // State update from the registers: S = S_bar + k u^T, k = rk * k^.
#pragma unroll
  for (int m = 0; m < ROWS; ++m) {
    const int i = rg + m * RG;
    const float kk = sm.k[i] * rk;
#pragma unroll
    for (int v = 0; v < VEC; ++v) st[m][v] += kk * u_s[cgi * VEC + v];
    StateVec<T>::Store(state + static_cast<int64_t>(i) * p.dv + cgi * VEC, st[m]);
  }

  int r_lo = 0;
  if (cl > 1) {
    ClusterWaitAcquire();
    r_lo = g * p.S;
    // This block's share of the q/k history shift: every block has read them by now.
    const int64_t qr = int64_t{b} * p.q_st, kr = int64_t{b} * p.k_st;
    float* hq = reinterpret_cast<float*>(base + p.cq_off);
    float* hk = reinterpret_cast<float*>(base + p.ck_off);
    const int per = DK / cl;
    for (int t = tid; t < 2 * per; t += NT) {
      const int c = kh * DK + rank * per + (t % per);
      if (t < per) {
        ShiftHistory(hq + c, p.key_dim, p.W, LoadRaw(p.q_raw, qr + c, p.raw_bf16));
      } else {
        ShiftHistory(hk + c, p.key_dim, p.W, LoadRaw(p.k_raw, kr + c, p.raw_bf16));
      }
    }
  }
  if (tid < DVS) {
    float total = 0.0f;
    for (int r2 = r_lo; r2 < r_lo + (cl > 1 ? p.S : 1); ++r2) {
#pragma unroll
      for (int w = 0; w < NW; ++w) total += ss_all[r2][w];
    }
    const float inv = 1.0f / sqrtf(total / static_cast<float>(p.dv) + p.eps);
    const float act = p.gate_sigmoid ? Sigmoid(zz + zb) : Silu(zz + zb);
    StoreY(p, b, col0 + tid, o * inv * on * act);
  }
}

// Prep kernel of kStreamed: conv + history shift, norms and gates of one (sequence, key head)
// item per group of DK threads (thread t owns key channel t and value columns t, t + DK, ...),
// written as the item's prep record (PrepRowFloats) and published (ready word = G). Every load
// of an item is issued before any is used (one memory round trip; the slot index is fetched an
// item ahead), and groups never wait for each other, so a block has kPrepThreads / DK items in
// flight. Persistent: a grid of kPrepBlocksPerSm blocks per SM walks the items in the order the
// recurrence blocks consume them; it is resident at once and triggers its dependents at the
// start, so the recurrence kernel runs beside it and each of its blocks waits for its own record
// only.
// Registers are capped so that the prep blocks and three fp32 recurrence blocks share an SM.
constexpr int kPrepThreads = 256;
constexpr int kPrepBlocksPerSm = 2;

__device__ __forceinline__ void NamedBarrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// One channel of a causal depthwise conv of width W (WC when given at compile time, so the
// loops unroll to exactly W taps; else the runtime width, at most kMaxConv): Load() reads the
// history rows (W - 1, oldest first, row_stride apart), the weights and the new input into
// registers; Finish() returns SiLU(conv) and shifts the history by one row with the input
// appended.
template <int WC>
struct ConvChannel {
  static constexpr int TAPS = WC > 0 ? WC : kMaxConv;
  float h[TAPS], w[TAPS], x;

  __device__ __forceinline__ void Load(const float* hist, int64_t row_stride, int w_rt,
                                       const float* wts, float x_in) {
    const int W = WC > 0 ? WC : w_rt;
    x = x_in;
#pragma unroll
    for (int j = 0; j < TAPS; ++j) {
      if (j < W) w[j] = __ldg(wts + j);
      if (j < W - 1) h[j] = hist[j * row_stride];
    }
  }
  __device__ __forceinline__ float Finish(float* hist, int64_t row_stride, int w_rt) const {
    const int W = WC > 0 ? WC : w_rt;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < TAPS; ++j) {
      if (j < W - 1) {
        acc += w[j] * h[j];
      } else if (j == W - 1) {
        acc += w[j] * x;
      }
    }
#pragma unroll
    for (int j = 0; j + 1 < TAPS; ++j) {
      if (j < W - 2) {
        hist[j * row_stride] = h[j + 1];
      } else if (j == W - 2) {
        hist[j * row_stride] = x;
      }
    }
    return Silu(acc);
  }
};

template <int DK, int DV, int WC>
__global__ void __launch_bounds__(kPrepThreads, 4) Gdn2PrepKernel(const Params p, int items) {
  constexpr int GT = DK, GROUPS = kPrepThreads / GT, GW = GT / 32;
  constexpr int VC = (DV + GT - 1) / GT;  // value columns per thread
  static_assert(GT % 32 == 0 && kPrepThreads % GT == 0, "groups of whole warps");
  __shared__ float sums[GROUPS][3][GW];
  // Overlapped launch: wait for the producer of the inputs first; the trigger comes after the
  // wait, because the recurrence kernel reads z without waiting.
  if (p.overlap) cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
  const int group = threadIdx.x / GT, t = threadIdx.x % GT;
  const int lane = threadIdx.x % 32, gwarp = t / 32;
  const int stride = gridDim.x * GROUPS;
  int item = blockIdx.x * GROUPS + group;
  int slot = item < items ? p.slots[item / p.H] : -1;
  for (; item < items; item += stride) {
    const int b = item / p.H, kh = item % p.H;
    const int cur_slot = slot;
    if (item + stride < items) slot = p.slots[(item + stride) / p.H];
    if (cur_slot < 0 || cur_slot >= p.num_slots) continue;  // the recurrence blocks skip it too
    char* base = p.pool + static_cast<int64_t>(cur_slot) * p.slot_stride;
    float* hq = reinterpret_cast<float*>(base + p.cq_off);
    float* hk = reinterpret_cast<float*>(base + p.ck_off);
    float* hv = reinterpret_cast<float*>(base + p.cv_off);
    const int64_t c = int64_t{kh} * DK + t;
    // Every load of the item first.
    ConvChannel<WC> cq, ck, cv[VC];
    cq.Load(hq + c, p.key_dim, p.W, p.q_cw + c * p.W,
            LoadRaw(p.q_raw, b * p.q_st + c, p.raw_bf16));
    ck.Load(hk + c, p.key_dim, p.W, p.k_cw + c * p.W,
            LoadRaw(p.k_raw, b * p.k_st + c, p.raw_bf16));
    const float f = p.f_raw[b * p.f_st + c] + __ldg(p.dt_bias + c);
    const float braw = LoadRaw(p.b_raw, b * p.b_st + c, p.raw_bf16);
    const float alog = __ldg(p.a_log + kh);
    float wr[VC];
    const int64_t col0 = int64_t{kh} * p.G * DV;  // value head kh * G first
#pragma unroll
    for (int m = 0; m < VC; ++m) {
      const int64_t j = col0 + t + m * GT;
      if (t + m * GT < DV) {
        cv[m].Load(hv + j, p.value_dim, p.W, p.v_cw + j * p.W,
                   LoadRaw(p.v_raw, b * p.v_st + j, p.raw_bf16));
        wr[m] = LoadRaw(p.w_raw, b * p.w_st + j, p.raw_bf16);
      }
    }
    // Conv, norms (group sums), gates.
    const float qv = cq.Finish(hq + c, p.key_dim, p.W);
    const float kv = ck.Finish(hk + c, p.key_dim, p.W);
    float sq = WarpSum(qv * qv), sk = WarpSum(kv * kv), sqk = WarpSum(qv * kv);
    if (GW > 1) {
      if (lane == 0) {
        sums[group][0][gwarp] = sq;
        sums[group][1][gwarp] = sk;
        sums[group][2][gwarp] = sqk;
      }
      NamedBarrier(1 + group, GT);
      sq = sk = sqk = 0.0f;
#pragma unroll
      for (int w = 0; w < GW; ++w) {
        sq += sums[group][0][w];
        sk += sums[group][1][w];
        sqk += sums[group][2][w];
      }
    }
    const float rq = rsqrtf(static_cast<float>(DK)) / sqrtf(sq + 1e-6f);
    const float rk = 1.0f / sqrtf(sk + 1e-6f);
    const float kn = kv * rk;
    float* rec = PrepRecord(p, b, kh, DK);
    rec[t] = qv * rq;
    rec[DK + t] = kn;
    rec[2 * DK + t] = __expf(-__expf(alog) * Softplus(f));
    rec[3 * DK + t] = Sigmoid(braw) * (p.neg_eig ? 2.0f : 1.0f) * kn;
    if (t == 0) rec[4 * DK] = sqk * rq * rk;
    float* wv = PrepWv(p, b, DK);
#pragma unroll
    for (int m = 0; m < VC; ++m) {
      const int64_t j = col0 + t + m * GT;
      if (t + m * GT < DV) wv[j] = Sigmoid(wr[m]) * cv[m].Finish(hv + j, p.value_dim, p.W);
    }
    // Further value heads of a grouped key head: one more round trip each.
    for (int g = 1; g < p.G; ++g) {
#pragma unroll
      for (int m = 0; m < VC; ++m) {
        const int64_t j = col0 + g * DV + t + m * GT;
        if (t + m * GT < DV) {
          cv[m].Load(hv + j, p.value_dim, p.W, p.v_cw + j * p.W,
                     LoadRaw(p.v_raw, b * p.v_st + j, p.raw_bf16));
          wr[m] = LoadRaw(p.w_raw, b * p.w_st + j, p.raw_bf16);
        }
      }
#pragma unroll
      for (int m = 0; m < VC; ++m) {
        const int64_t j = col0 + g * DV + t + m * GT;
        if (t + m * GT < DV) wv[j] = Sigmoid(wr[m]) * cv[m].Finish(hv + j, p.value_dim, p.W);
      }
    }
    // The group's stores are ordered before thread 0's release (cumulative), which also frees
    // `sums` for the next item.
    NamedBarrier(1 + group, GT);
    if (t == 0) StoreRelease(PrepReady(p, b, DK) + kh, static_cast<unsigned>(p.G));
  }
}

template <typename T, int DK, int DVS>
absl::Status FusedT(const Params& p, int batch, cudaStream_t stream) {
  const int cl = p.G * p.S;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.H * cl, batch, 1);
  cfg.blockDim = dim3(Tile<T, DK, DVS>::NT, 1, 1);
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
  if (p.overlap) attr[n++] = ProgrammaticLaunchAttr();
  cfg.attrs = attr;
  cfg.numAttrs = n;
  auto kernel = Gdn2FusedKernel<T, DK, DVS>;
  const int smem = p.gate_rank > 0 ? GateFold::SmemBytes(DK, DVS, p.gate_rank) : 0;
  static int smem_set = 48 << 10;  // per instantiation; idempotent, so a benign race
  if (smem > smem_set) {
    DS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    smem_set = smem;
  }
  cfg.dynamicSmemBytes = smem;
  DS_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, p));
  return LaunchStatus("Gdn2FusedKernel");
}

template <int DK, int DV>
absl::Status PrepT(const Params& p, int batch, cudaStream_t stream) {
  int device = 0, sms = 0;
  DS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  DS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int items = batch * p.H;
  const int groups = kPrepThreads / DK;
  const int blocks = std::min((items + groups - 1) / groups, sms * kPrepBlocksPerSm);
  // The models' conv width 4 is compiled in (the conv loops unroll to four taps); others read
  // it from p.W.
  auto kernel = p.W == 4 ? Gdn2PrepKernel<DK, DV, 4> : Gdn2PrepKernel<DK, DV, 0>;
  // The recurrence blocks need the SM's largest shared-memory configuration; an SM configured
  // for the prep kernel's default (mostly L1) would not take them until its prep blocks leave.
  static bool carveout_set[2] = {false, false};  // per instantiation; idempotent, benign race
  bool& set = carveout_set[p.W == 4 ? 0 : 1];
  if (!set) {
    DS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    set = true;
  }
  return LaunchKernel("Gdn2PrepKernel", kernel, dim3(blocks), dim3(kPrepThreads), 0, stream,
                      p.overlap, p, items);
}

}  // namespace

absl::Status LaunchPrep(const Params& p, int dk, int dv, int batch, cudaStream_t stream) {
  return DispatchTileShape(dk, dv, "gdn2 decode (prep): ", [&]<int DK, int DV>() {
    return PrepT<DK, DV>(p, batch, stream);
  });
}

absl::Status PrepRegistersPerSm(const Params& p, int dk, int dv, int* regs) {
  return DispatchTileShape(dk, dv, "gdn2 decode (prep): ", [&]<int DK, int DV>() {
    cudaFuncAttributes fa;
    DS_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(
        &fa, p.W == 4 ? Gdn2PrepKernel<DK, DV, 4> : Gdn2PrepKernel<DK, DV, 0>));
    *regs = kPrepBlocksPerSm * BlockRegisters(kPrepThreads, fa.numRegs);
    return absl::OkStatus();
  });
}

absl::Status LaunchFused(const Params& p, int dk, int dvs, DType state_type, int batch,
                           cudaStream_t stream) {
  return DispatchTileShape(dk, dvs, "gdn2 decode (fused): ", [&]<int DK, int DV>() {
    return state_type == DType::kF32 ? FusedT<float, DK, DV>(p, batch, stream)
                                     : FusedT<__nv_bfloat16, DK, DV>(p, batch, stream);
  });
}

}  // namespace deltaserve::cuda::gdn2_detail
