// Row-wise GDN-2 prefill kernels; see gdn2_prefill_ops.h for the contract.
#include "kernels/cuda/gdn2_prefill_ops.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve::cuda {
namespace {

__device__ __forceinline__ float Softplus(float x) { return x > 20.0f ? x : log1pf(__expf(x)); }
__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

// Sum over the block (blockDim.x a multiple of 32, at most 128 threads).
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < nw; ++i) t += scratch[i];
  return t;
}

// grid (rows, max(H, HV)), block max(dk, dv) threads.
__global__ void GatesKernel(int H, int HV, int dk, int dv, bool neg_eig, Gdn2PrefillGatesArgs a) {
  __shared__ float scratch[4];
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y, c = threadIdx.x;
  if (h < H) {  // block-uniform
    const int64_t col = static_cast<int64_t>(h) * dk + c;
    const bool in = c < dk;
    const float qv = in ? a.q[r * a.q_stride + col] : 0.f;
    const float kv = in ? a.k[r * a.k_stride + col] : 0.f;
    const float sq = BlockSum(qv * qv, scratch);
    const float sk = BlockSum(kv * kv, scratch);
    if (in) {
      a.q[r * a.q_stride + col] = qv * (rsqrtf(static_cast<float>(dk)) / sqrtf(sq + 1e-6f));
      a.k[r * a.k_stride + col] = kv * (1.0f / sqrtf(sk + 1e-6f));
      float* f = a.f + r * a.f_stride + col;
      *f = -__expf(a.a_log[h]) * Softplus(*f + a.dt_bias[col]);
      float* b = a.b + r * a.b_stride + col;
      *b = Sigmoid(*b) * (neg_eig ? 2.0f : 1.0f);
    }
  }
  if (h < HV && c < dv) {
    float* w = a.w + r * a.w_stride + static_cast<int64_t>(h) * dv + c;
    *w = Sigmoid(*w);
  }
}

// grid (rows, HV), block dv threads.
__global__ void OutputKernel(int dv, float eps, bool gate_sigmoid, Gdn2PrefillOutputArgs a) {
  __shared__ float scratch[4];
  const int64_t r = blockIdx.x;
  const int hv = blockIdx.y, j = threadIdx.x;
  const int64_t col = static_cast<int64_t>(hv) * dv + j;
  const float o = a.o[r * a.o_stride + col];
  const float ss = BlockSum(o * o, scratch);
  const float zz = a.z[r * a.z_stride + col] + a.z_bias[col];
  const float act = gate_sigmoid ? Sigmoid(zz) : zz * Sigmoid(zz);
  const float y = o * (1.0f / sqrtf(ss / static_cast<float>(dv) + eps)) * a.o_norm[j] * act;
  if (a.y_type == DType::kBF16)
    static_cast<__nv_bfloat16*>(a.y)[r * a.y_stride + col] = __float2bfloat16(y);
  else
    static_cast<float*>(a.y)[r * a.y_stride + col] = y;
}

bool DimOk(int d) { return d == 32 || d == 64 || d == 128; }

}  // namespace

absl::Status LaunchGdn2PrefillGates(const Gdn2DecodeShape& s, const Gdn2PrefillGatesArgs& a,
                                    cudaStream_t stream) {
  if (!DimOk(s.head_k_dim) || !DimOk(s.head_v_dim))
    return absl::InvalidArgumentError("gdn2 prefill gates: head dims must be 32, 64 or 128");
  if (s.num_heads <= 0 || s.num_v_heads <= 0 || s.num_v_heads % s.num_heads != 0)
    return absl::InvalidArgumentError("gdn2 prefill gates: num_v_heads must be a multiple of num_heads");
  if (a.rows < 0) return absl::InvalidArgumentError("gdn2 prefill gates: rows must be >= 0");
  if (a.rows == 0) return absl::OkStatus();
  if (a.rows > 2147483647) return absl::InvalidArgumentError("gdn2 prefill gates: too many rows");
  if (a.q == nullptr || a.k == nullptr || a.f == nullptr || a.b == nullptr || a.w == nullptr ||
      a.a_log == nullptr || a.dt_bias == nullptr)
    return absl::InvalidArgumentError("gdn2 prefill gates: a tensor is not set");
  if (a.q_stride < s.key_dim() || a.k_stride < s.key_dim() || a.f_stride < s.key_dim() ||
      a.b_stride < s.key_dim() || a.w_stride < s.value_dim())
    return absl::InvalidArgumentError("gdn2 prefill gates: a row stride is too small");
  const int threads = s.head_k_dim > s.head_v_dim ? s.head_k_dim : s.head_v_dim;
  const int heads = s.num_heads > s.num_v_heads ? s.num_heads : s.num_v_heads;
  GatesKernel<<<dim3(static_cast<unsigned>(a.rows), heads), threads, 0, stream>>>(
      s.num_heads, s.num_v_heads, s.head_k_dim, s.head_v_dim, s.allow_neg_eigval, a);
  return LaunchStatus("Gdn2PrefillGatesKernel");
}

absl::Status LaunchGdn2PrefillOutput(const Gdn2DecodeShape& s, const Gdn2PrefillOutputArgs& a,
                                     cudaStream_t stream) {
  if (!DimOk(s.head_v_dim))
    return absl::InvalidArgumentError("gdn2 prefill output: head_v_dim must be 32, 64 or 128");
  if (a.rows < 0) return absl::InvalidArgumentError("gdn2 prefill output: rows must be >= 0");
  if (a.rows == 0) return absl::OkStatus();
  if (a.rows > 2147483647) return absl::InvalidArgumentError("gdn2 prefill output: too many rows");
  if (a.o == nullptr || a.z == nullptr || a.z_bias == nullptr || a.o_norm == nullptr ||
      a.y == nullptr)
    return absl::InvalidArgumentError("gdn2 prefill output: a tensor is not set");
  if (a.o_stride < s.value_dim() || a.z_stride < s.value_dim() || a.y_stride < s.value_dim())
    return absl::InvalidArgumentError("gdn2 prefill output: a row stride is too small");
  OutputKernel<<<dim3(static_cast<unsigned>(a.rows), s.num_v_heads), s.head_v_dim, 0, stream>>>(
      s.head_v_dim, s.norm_eps, s.gate_sigmoid, a);
  return LaunchStatus("Gdn2PrefillOutputKernel");
}

}  // namespace deltaserve::cuda
