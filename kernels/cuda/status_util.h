// Host-side helpers for CUDA launchers: turning cudaError_t into absl::Status. Include only from
// .cu/.cc files of kernels/cuda and engine/cuda (it includes the CUDA runtime header).
//
// Thread-safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace deltaserve::cuda {

inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(err), " (",
                                          cudaGetErrorString(err), ")"));
}

// Status of the last launch on this thread (clears the sticky-free launch error).
inline absl::Status LaunchStatus(const char* kernel) {
  return CudaStatus(cudaGetLastError(), kernel);
}

}  // namespace deltaserve::cuda

#define DS_CUDA_RETURN_IF_ERROR(expr)                                          \
  do {                                                                         \
    cudaError_t ds_cuda_err_ = (expr);                                         \
    if (ds_cuda_err_ != cudaSuccess)                                           \
      return ::deltaserve::cuda::CudaStatus(ds_cuda_err_, #expr);              \
  } while (0)
