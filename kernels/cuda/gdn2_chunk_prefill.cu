// Chunked GDN-2 prefill: argument checks and the dispatch to the two phases (phase 1 in
// gdn2_chunk_intra.cu, phase 2 in gdn2_chunk_state_pass.cu), and the token-serial kernel. See
// gdn2_chunk_prefill.h for the contract, gdn2_chunk_phases.h for the workspace layout,
// tools/gdn2_chunk_check.py for the float64 derivation of the chunk form, and bench/NOTES.md
// for the retired phase versions (phase 1 v1-v2, phase 2 v1 with its FMA variant).
#include "kernels/cuda/gdn2_chunk_prefill.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/gdn2_chunk_phases.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

using gdn2_chunk::kC;
using gdn2_chunk::kDk;
using gdn2_chunk::kDv;
using gdn2_chunk::ToFloat;

// Token-serial recurrence: one block per (column block of 32, value head, sequence); thread r
// owns row r of the state block in registers. Inputs q, k, b, v, w of type TIn.
constexpr int kSerialCols = 32;
template <typename TIn>
__global__ void __launch_bounds__(kDk) Gdn2SerialKernel(
    int heads_per_group, const int32_t* __restrict__ cu, const int32_t* __restrict__ slots,
    char* __restrict__ pool, int64_t slot_stride, int64_t recurrent_offset,
    const TIn* __restrict__ q, const TIn* __restrict__ k, const float* __restrict__ g,
    const TIn* __restrict__ b, const TIn* __restrict__ v, const TIn* __restrict__ w,
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
    const float kc = ToFloat(k[tok * k_stride + col]);
    const float qc = ToFloat(q[tok * q_stride + col]);
    const float alpha = expf(g[tok * g_stride + col]);
    const float bk = ToFloat(b[tok * b_stride + col]) * kc;
    if (r < kN) {
      const int64_t vc = static_cast<int64_t>(hv) * kDv + n0 + r;
      wv[r] = ToFloat(w[tok * w_stride + vc]) * ToFloat(v[tok * v_stride + vc]);
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

// Gdn2SerialKernel<TIn> over `a` (checked); q, k, b, v, w are TIn.
template <typename TIn>
void LaunchSerialKernel(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                        cudaStream_t stream) {
  Gdn2SerialKernel<TIn><<<dim3(kDv / kSerialCols, shape.num_v_heads, a.num_seqs), kDk, 0,
                          stream>>>(
      shape.num_v_heads / shape.num_heads, a.cu_seqlens, a.slots, static_cast<char*>(a.pool),
      a.slot_stride_bytes, a.recurrent_offset, static_cast<const TIn*>(a.q),
      static_cast<const TIn*>(a.k), a.g, static_cast<const TIn*>(a.b),
      static_cast<const TIn*>(a.v), static_cast<const TIn*>(a.w), a.q_stride, a.k_stride,
      a.g_stride, a.b_stride, a.v_stride, a.w_stride, a.o, a.o_stride);
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
  if (a.input_type != DType::kF32 && a.input_type != DType::kBF16)
    return bad("input_type must be f32 or bf16");
  const int in_align = a.input_type == DType::kF32 ? 4 : 8;  // elements per 16 bytes
  if ((a.g_stride | a.o_stride) % 4 != 0 ||
      (a.q_stride | a.k_stride | a.b_stride | a.v_stride | a.w_stride) % in_align != 0)
    return bad("row strides must be multiples of 16 bytes (4 f32 or 8 bf16 elements)");
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

// A stream of the greatest priority on the current device, created once and kept for the process,
// on which phase 2 runs beside phase 1 (its blocks then take SMs before phase 1's waiting ones).
absl::StatusOr<cudaStream_t> SideStream() {
  static std::mutex mu;
  static std::map<int, cudaStream_t>* streams = new std::map<int, cudaStream_t>();
  int device = 0;
  DS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  auto it = streams->find(device);
  if (it != streams->end()) return it->second;
  int least = 0, greatest = 0;
  DS_CUDA_RETURN_IF_ERROR(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaStream_t side = nullptr;
  DS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithPriority(&side, cudaStreamNonBlocking, greatest));
  (*streams)[device] = side;
  return side;
}

// Whether phase 2 runs beside phase 1: kBf16 with both phases, and a phase-2 grid small enough
// (a quarter of the SMs at most: a few long prompts) that it would leave most of the GPU idle.
bool SideBySide(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a) {
  if (a.precision != Gdn2PrefillPrecision::kBf16 || a.phase_mask != 3) return false;
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    return false;
  return gdn2_chunk::Phase2Bf16Blocks(shape, a.num_seqs) * 4 <= sms;
}

// Phase 1 on `stream`, then phase 2 on the side stream, which waits for each chunk's ready word
// instead of for the whole of phase 1; `stream` waits for both. (Phase 1 never waits for phase 2,
// so every chunk is published whatever the order the blocks of the two grids get SMs in.)
absl::Status LaunchSideBySide(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                              cudaStream_t stream) {
  absl::StatusOr<cudaStream_t> side = SideStream();
  if (!side.ok()) return side.status();
  unsigned* ready = reinterpret_cast<unsigned*>(
      a.workspace + gdn2_chunk::ReadyBase(shape, a.total_tokens, a.num_seqs, a.precision));
  const int64_t words = gdn2_chunk::ReadyWords(a.total_tokens, a.num_seqs, shape.num_v_heads);
  DS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(ready, 0, words * sizeof(unsigned), stream));
  cudaEvent_t forked = nullptr, joined = nullptr;
  DS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&forked, cudaEventDisableTiming));
  if (cudaError_t err = cudaEventCreateWithFlags(&joined, cudaEventDisableTiming);
      err != cudaSuccess) {
    cudaEventDestroy(forked);
    return CudaStatus(err, "cudaEventCreateWithFlags");
  }
  // The side stream waits for the zeroed ready words only, not for phase 1.
  cudaError_t err = cudaEventRecord(forked, stream);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(*side, forked);
  auto launch_both = [&]() -> absl::Status {
    if (absl::Status st = gdn2_chunk::LaunchPhase1(shape, a, ready, stream); !st.ok()) return st;
    return gdn2_chunk::LaunchPhase2Bf16(shape, a, /*after_phase1=*/false, ready, *side);
  };
  const absl::Status launched = err == cudaSuccess ? launch_both() : absl::OkStatus();
  if (err == cudaSuccess && (err = cudaEventRecord(joined, *side)) == cudaSuccess)
    err = cudaStreamWaitEvent(stream, joined);
  cudaEventDestroy(forked);
  cudaEventDestroy(joined);
  if (!launched.ok()) return launched;
  if (err != cudaSuccess) return CudaStatus(err, "gdn2 prefill: side-stream fork / join");
  return absl::OkStatus();
}

}  // namespace

int64_t Gdn2ChunkWorkspaceFloats(const Gdn2PrefillShape& shape, int64_t total_tokens,
                                 int num_seqs, Gdn2PrefillPrecision precision) {
  return gdn2_chunk::ReadyBase(shape, total_tokens, num_seqs, precision) +
         gdn2_chunk::ReadyWords(total_tokens, num_seqs, shape.num_v_heads);
}

absl::Status LaunchGdn2ChunkPrefill(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                                    cudaStream_t stream) {
  if (a.splits != 0 && a.splits != 2 && a.splits != 4 && a.splits != 8)
    return absl::InvalidArgumentError("gdn2 prefill: splits must be 0, 2, 4 or 8");
  if (a.phase_mask < 1 || a.phase_mask > 3)
    return absl::InvalidArgumentError("gdn2 prefill: phase_mask must be 1, 2 or 3");
  if (a.precision != Gdn2PrefillPrecision::kFp32 && a.precision != Gdn2PrefillPrecision::kTf32 &&
      a.precision != Gdn2PrefillPrecision::kBf16)
    return absl::InvalidArgumentError("gdn2 prefill: precision must be kFp32, kTf32 or kBf16");
  if (absl::Status st = CheckArgs(shape, a); !st.ok()) return st;
  if (a.num_seqs == 0 || a.total_tokens == 0) return absl::OkStatus();
  const int64_t need = Gdn2ChunkWorkspaceFloats(shape, a.total_tokens, a.num_seqs, a.precision);
  if (reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0)
    return absl::InvalidArgumentError("gdn2 prefill: workspace must be 16-byte aligned");
  if (a.workspace == nullptr || a.workspace_floats < need)
    return absl::InvalidArgumentError(
        absl::StrCat("gdn2 prefill: workspace needs ", need, " floats, got ", a.workspace_floats));
  if (SideBySide(shape, a)) return LaunchSideBySide(shape, a, stream);
  if (a.phase_mask & 1) {
    if (absl::Status st = gdn2_chunk::LaunchPhase1(shape, a, /*ready=*/nullptr, stream);
        !st.ok())
      return st;
  }
  if (!(a.phase_mask & 2)) return absl::OkStatus();
  const bool after_phase1 = (a.phase_mask & 1) != 0;
  if (a.precision == Gdn2PrefillPrecision::kBf16)
    return gdn2_chunk::LaunchPhase2Bf16(shape, a, after_phase1, /*ready=*/nullptr, stream);
  return gdn2_chunk::LaunchPhase2(shape, a, after_phase1, stream);
}

absl::Status LaunchGdn2SerialPrefill(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& a,
                                     cudaStream_t stream) {
  if (absl::Status st = CheckArgs(shape, a); !st.ok()) return st;
  if (a.num_seqs == 0 || a.total_tokens == 0) return absl::OkStatus();
  if (a.input_type == DType::kBF16) {
    LaunchSerialKernel<__nv_bfloat16>(shape, a, stream);
  } else {
    LaunchSerialKernel<float>(shape, a, stream);
  }
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
