// Host-side helpers for CUDA launchers: turning cudaError_t into absl::Status, and the
// programmatic-launch attribute. Include only from .cu/.cc files of kernels/cuda and
// engine/cuda (it includes the CUDA runtime header).
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

// The launch attribute that makes a cudaLaunchKernelEx launch a programmatic dependent of the
// kernel before it on its stream (it may start before that kernel ends; it orders its reads with
// cudaGridDependencySynchronize).
inline cudaLaunchAttribute ProgrammaticLaunchAttr() {
  cudaLaunchAttribute a;
  a.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  a.val.programmaticStreamSerializationAllowed = 1;
  return a;
}

}  // namespace deltaserve::cuda

#define DS_CUDA_RETURN_IF_ERROR(expr)                                          \
  do {                                                                         \
    cudaError_t ds_cuda_err_ = (expr);                                         \
    if (ds_cuda_err_ != cudaSuccess)                                           \
      return ::deltaserve::cuda::CudaStatus(ds_cuda_err_, #expr);              \
  } while (0)
