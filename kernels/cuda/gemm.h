// bf16 matrix products through cuBLASLt with fp32 accumulation, for the linear layers.
//
//   out[M, N] = alpha * x[M, K] . W[N, K]^T + beta * out[M, N]
//     x    bf16, row-major, row stride ldx >= K (elements)
//     W    bf16, row-major [N, K] (PyTorch Linear layout), row stride ldw >= K
//     out  f32 or bf16, row-major, row stride ldo >= N; beta = 1 accumulates into it (used to
//          fuse the residual add into the output projections)
// Pointers must be 16-byte aligned and strides multiples of 8 elements (tensor-core paths).
//
// Thread-safety: a Gemm object owns one cuBLASLt handle, a workspace and a plan cache; use one
// per thread (the CUDA runner has one). Calls are ordered on the given stream and can be
// captured into a CUDA graph (no allocation happens during a call once a shape was planned).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve::cuda {

class Gemm {
 public:
  static absl::StatusOr<std::unique_ptr<Gemm>> Create();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  absl::Status Run(int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx, const void* w,
                   int64_t ldw, void* out, int64_t ldo, DType out_type, float beta,
                   cudaStream_t stream, float alpha = 1.0f);

 private:
  struct Impl;
  explicit Gemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace deltaserve::cuda
