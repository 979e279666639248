// Host-side helpers for CUDA launchers: turning cudaError_t into absl::Status, the
// programmatic-launch attribute and a launch that may carry it, the device's SM count. Include
// only from .cu/.cc files of kernels/cuda and engine/cuda (it includes the CUDA runtime header).
//
// Thread-safety: stateless, but for NumSms's cache (initialised once, thread-safe).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

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

// Launches kernel<<<grid, block, smem, stream>>>(args...) (arguments converted to the kernel's
// parameter types), as a programmatic dependent of the kernel before it on `stream` when
// `programmatic`. The status names `name`.
template <typename... Params, typename... Args>
absl::Status LaunchKernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                          size_t smem, cudaStream_t stream, bool programmatic, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1] = {ProgrammaticLaunchAttr()};
  cfg.attrs = attr;
  cfg.numAttrs = programmatic ? 1 : 0;
  if (cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
      err != cudaSuccess)
    return CudaStatus(err, name);
  return LaunchStatus(name);
}

// SM count of the device current at the first call, cached for the process; 132 (an H100's or
// H200's) where the device cannot be asked. For grid sizing, which must not fail a launch.
inline int NumSms() {
  static const int sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();  // clear it: the launch reports any real problem
      return 132;
    }
    return n;
  }();
  return sms;
}

}  // namespace deltaserve::cuda

#define DS_CUDA_RETURN_IF_ERROR(expr)                                          \
  do {                                                                         \
    cudaError_t ds_cuda_err_ = (expr);                                         \
    if (ds_cuda_err_ != cudaSuccess)                                           \
      return ::deltaserve::cuda::CudaStatus(ds_cuda_err_, #expr);              \
  } while (0)
