// GPU sampler (see sampling.h): one 1024-thread block per row; thread t owns the contiguous id
// range [t*C, (t+1)*C). Reductions and scans go through CUB block primitives (fixed order, so a
// row's result is deterministic).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda_runtime.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

constexpr int kThreads = 1024;

__global__ void PenaltyKernel(float* logits, int64_t ld, const int32_t* row_index,
                              const PenaltyEntry* e, int64_t n, const PenaltyRowParams* rp) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const PenaltyEntry en = e[i];
  const PenaltyRowParams p = rp[en.row];
  float* x = logits + static_cast<int64_t>(row_index[en.row]) * ld + en.token;
  float l = *x;
  if (p.repetition != 1.0f) l = l > 0.0f ? l / p.repetition : l * p.repetition;
  if (en.gen_count > 0) {
    l -= p.presence;
    l -= p.frequency * static_cast<float>(en.gen_count);
  }
  *x = l;
}

struct ArgMax {
  float v;
  int i;
};

struct ArgMaxOp {
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    if (b.v > a.v || (b.v == a.v && b.i < a.i)) return b;
    return a;
  }
};

struct MaxI {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

using Reduce = cub::BlockReduce<double, kThreads>;
using ReduceArg = cub::BlockReduce<ArgMax, kThreads>;
using ReduceF = cub::BlockReduce<float, kThreads>;
using ReduceI = cub::BlockReduce<int, kThreads>;
using ScanD = cub::BlockScan<double, kThreads>;
using ScanI = cub::BlockScan<int, kThreads>;

struct Smem {
  union {
    Reduce::TempStorage r;
    ReduceArg::TempStorage ra;
    ReduceF::TempStorage rf;
    ReduceI::TempStorage ri;
    ScanD::TempStorage sd;
    ScanI::TempStorage si;
  } t;
  int hist[256];
  double d_bcast;
  float f_bcast;
  int i_bcast[2];
};

__device__ double SumD(Smem& sm, double v) {
  __syncthreads();
  const double t = Reduce(sm.t.r).Sum(v);
  if (threadIdx.x == 0) sm.d_bcast = t;
  __syncthreads();
  return sm.d_bcast;
}

// Candidate test "w > thr, or w == thr and id <= cut".
struct Cut {
  float thr;
  int cut;
  __device__ bool In(float w, int i) const { return w > thr || (w == thr && i <= cut); }
};

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* logits, int64_t ld, const int32_t* row_index, int vocab,
                 const SampleRowParams* params,
                 float* scratch, int32_t* tokens, float* logprobs) {
  __shared__ Smem sm;
  const int row = blockIdx.x;
  const int tid = threadIdx.x;
  const float* x = logits + static_cast<int64_t>(row_index[row]) * ld;
  float* w = scratch + static_cast<int64_t>(row) * vocab;
  const SampleRowParams prm = params[row];
  const int C = (vocab + kThreads - 1) / kThreads;
  const int i0 = min(vocab, tid * C), i1 = min(vocab, i0 + C);

  // Argmax over non-NaN (ties lowest), max over all and over finite values.
  ArgMax best{-INFINITY, -1};
  float mall = -INFINITY, mfin = -INFINITY;
  for (int i = i0; i < i1; ++i) {
    const float v = x[i];
    if (isnan(v)) continue;
    if (best.i < 0 || v > best.v) best = {v, i};
    mall = fmaxf(mall, v);
    if (isfinite(v)) mfin = fmaxf(mfin, v);
  }
  __syncthreads();
  ArgMax top = ReduceArg(sm.t.ra).Reduce(best, ArgMaxOp());
  if (tid == 0) sm.i_bcast[1] = top.i < 0 ? 0 : top.i;
  __syncthreads();
  const int argmax = sm.i_bcast[1];
  mall = ReduceF(sm.t.rf).Reduce(mall, MaxOp());
  if (tid == 0) sm.f_bcast = mall;
  __syncthreads();
  mall = sm.f_bcast;
  __syncthreads();
  mfin = ReduceF(sm.t.rf).Reduce(mfin, MaxOp());
  if (tid == 0) sm.f_bcast = mfin;
  __syncthreads();
  mfin = sm.f_bcast;

  // logsumexp of the (penalised) logits, temperature 1.
  double se = 0.0;
  if (isfinite(mall)) {
    for (int i = i0; i < i1; ++i) {
      if (!isnan(x[i])) se += exp(static_cast<double>(x[i]) - mall);
    }
  }
  se = SumD(sm, se);
  const double lse = isfinite(mall) ? mall + log(se) : mall;

  int token = argmax;
  if (prm.temperature > 0.0f) {
    if (!isfinite(mfin)) {
      token = 0;
    } else {
      const float inv_t = 1.0f / prm.temperature;
      double tot = 0.0;
      for (int i = i0; i < i1; ++i) {
        const float wi = isfinite(x[i]) ? expf((x[i] - mfin) * inv_t) : 0.0f;
        w[i] = wi;
        tot += wi;
      }
      tot = SumD(sm, tot);
      __syncthreads();
      const bool use_k = prm.top_k > 0 && prm.top_k < vocab;
      const bool use_p = prm.top_p < 1.0f;
      const float min_w = prm.min_p > 0.0f ? prm.min_p : 0.0f;
      Cut ck{-1.0f, -1}, cp{-1.0f, -1};
      double z = tot;
      if (use_k) {
        // Radix select of the k-th largest weight (non-negative floats order as their bits).
        unsigned prefix = 0, mask = 0;
        int k = prm.top_k;
        for (int shift = 24; shift >= 0; shift -= 8) {
          for (int b = tid; b < 256; b += kThreads) sm.hist[b] = 0;
          __syncthreads();
          for (int i = i0; i < i1; ++i) {
            const unsigned bits = __float_as_uint(w[i]);
            if ((bits & mask) == prefix) atomicAdd(&sm.hist[(bits >> shift) & 255], 1);
          }
          __syncthreads();
          if (tid == 0) {
            int acc = 0, b = 255;
            for (; b > 0; --b) {
              if (acc + sm.hist[b] >= k) break;
              acc += sm.hist[b];
            }
            sm.i_bcast[0] = b;
            sm.i_bcast[1] = k - acc;
          }
          __syncthreads();
          prefix |= static_cast<unsigned>(sm.i_bcast[0]) << shift;
          mask |= 255u << shift;
          k = sm.i_bcast[1];
          __syncthreads();
        }
        const float thr = __uint_as_float(prefix);
        // `k` ties at thr are kept, lowest ids first: find the k-th tie's id.
        int ties = 0;
        for (int i = i0; i < i1; ++i) ties += w[i] == thr;
        int before = 0;
        __syncthreads();
        ScanI(sm.t.si).ExclusiveSum(ties, before);
        if (before < k && before + ties >= k) {
          int c = before;
          for (int i = i0; i < i1; ++i) {
            if (w[i] == thr && ++c == k) {
              sm.i_bcast[0] = i;
              break;
            }
          }
        }
        __syncthreads();
        ck = {thr, sm.i_bcast[0]};
        double zk = 0.0;
        for (int i = i0; i < i1; ++i) {
          if (ck.In(w[i], i)) zk += w[i];
        }
        z = SumD(sm, zk);
      }
      if (use_p) {
        const double need = static_cast<double>(prm.top_p) * z;
        // Largest threshold t with mass(candidates, w >= t) >= need (bisection on bits).
        unsigned lo = 0, hi = 0x3f800000u;  // weights lie in [0, 1]
        while (lo < hi) {
          const unsigned mid = lo + (hi - lo + 1) / 2;
          const float t = __uint_as_float(mid);
          double m = 0.0;
          for (int i = i0; i < i1; ++i) {
            if (w[i] >= t && ck.In(w[i], i)) m += w[i];
          }
          m = SumD(sm, m);
          if (m >= need) lo = mid; else hi = mid - 1;
        }
        const float thr = __uint_as_float(lo);
        double gt = 0.0, tie_mass = 0.0;
        for (int i = i0; i < i1; ++i) {
          if (!ck.In(w[i], i)) continue;
          if (w[i] > thr) gt += w[i];
          if (w[i] == thr) tie_mass += w[i];
        }
        gt = SumD(sm, gt);
        double before = 0.0;
        __syncthreads();
        ScanD(sm.t.sd).ExclusiveSum(tie_mass, before);
        if (tid == 0) sm.i_bcast[0] = 0x7fffffff;
        __syncthreads();
        if (gt + before < need && gt + before + tie_mass >= need) {
          double acc = gt + before;
          for (int i = i0; i < i1; ++i) {
            if (w[i] == thr && ck.In(w[i], i)) {
              acc += w[i];
              if (acc >= need) {
                atomicMin(&sm.i_bcast[0], i);
                break;
              }
            }
          }
        }
        __syncthreads();
        cp = {thr, sm.i_bcast[0]};
      }
      // Draw in id order over the kept set.
      double kept = 0.0;
      int last = -1;
      for (int i = i0; i < i1; ++i) {
        if (ck.In(w[i], i) && cp.In(w[i], i) && w[i] >= min_w && w[i] > 0.0f) {
          kept += w[i];
          last = i;
        }
      }
      double before = 0.0;
      __syncthreads();
      ScanD(sm.t.sd).ExclusiveSum(kept, before);
      __syncthreads();
      const double total = SumD(sm, kept);
      const double target = prm.u * total;
      if (tid == 0) sm.i_bcast[0] = -1;
      __syncthreads();
      if (target >= before && target < before + kept) {
        double acc = before;
        for (int i = i0; i < i1; ++i) {
          if (ck.In(w[i], i) && cp.In(w[i], i) && w[i] >= min_w && w[i] > 0.0f) {
            acc += w[i];
            if (target < acc) {
              sm.i_bcast[0] = i;
              break;
            }
          }
        }
      }
      __syncthreads();
      // Rounding left no owner: the last kept id (as the CPU sampler does).
      token = sm.i_bcast[0];
      if (token < 0) {
        __syncthreads();
        int lm = ReduceI(sm.t.ri).Reduce(last, MaxI());
        if (tid == 0) sm.i_bcast[1] = lm < 0 ? argmax : lm;
        __syncthreads();
        token = sm.i_bcast[1];
      }
    }
  }
  if (tid == 0) {
    tokens[row] = token;
    logprobs[row] = static_cast<float>(static_cast<double>(x[token]) - lse);
  }
}

}  // namespace

absl::Status LaunchApplyPenalties(float* logits, int64_t ld, const int32_t* row_index,
                                  const PenaltyEntry* entries, int64_t num_entries,
                                  const PenaltyRowParams* row_params, cudaStream_t stream) {
  if (num_entries < 0) return absl::InvalidArgumentError("penalties: negative entry count");
  if (num_entries == 0) return absl::OkStatus();
  PenaltyKernel<<<static_cast<unsigned>((num_entries + 255) / 256), 256, 0, stream>>>(
      logits, ld, row_index, entries, num_entries, row_params);
  return LaunchStatus("PenaltyKernel");
}

absl::Status LaunchSample(const float* logits, int64_t ld, const int32_t* row_index, int rows,
                          int vocab,
                          const SampleRowParams* params, float* scratch, int32_t* tokens,
                          float* logprobs, cudaStream_t stream) {
  if (rows < 0 || vocab <= 0 || ld < vocab)
    return absl::InvalidArgumentError(absl::StrCat("sample: rows=", rows, " vocab=", vocab,
                                                   " ld=", ld));
  if (rows == 0) return absl::OkStatus();
  SampleKernel<<<rows, kThreads, 0, stream>>>(logits, ld, row_index, vocab, params, scratch,
                                              tokens, logprobs);
  return LaunchStatus("SampleKernel");
}

}  // namespace deltaserve::cuda
