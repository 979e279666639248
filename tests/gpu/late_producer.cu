// See late_producer.h.
#include "tests/gpu/late_producer.h"

#include "kernels/cuda/global_timer.cuh"

namespace deltaserve::testing {
namespace {

__global__ void LateCopyKernel(const float* src, float* dst, int64_t n, int64_t delay_ns) {
  cudaTriggerProgrammaticLaunchCompletion();
  cuda::SleepNs(delay_ns);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = src[i];
  }
}

}  // namespace

cudaError_t LaunchLateCopy(const float* src, float* dst, int64_t n, int64_t delay_ns,
                           cudaStream_t stream) {
  // Few blocks, all resident at once: every block triggers at its start.
  LateCopyKernel<<<16, 256, 0, stream>>>(src, dst, n, delay_ns);
  return cudaGetLastError();
}

}  // namespace deltaserve::testing
