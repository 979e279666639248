// See late_producer.h.
#include "tests/gpu/late_producer.h"

namespace deltaserve::testing {
namespace {

__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void LateCopyKernel(const float* src, float* dst, int64_t n, int64_t delay_ns) {
  cudaTriggerProgrammaticLaunchCompletion();
  const uint64_t start = GlobalTimerNs();
  while (GlobalTimerNs() - start < static_cast<uint64_t>(delay_ns)) __nanosleep(1000);
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
