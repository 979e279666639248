// Ready words between blocks of different kernels or grids running at once (device code only):
// a producer publishes finished data with a release store of a nonzero word, a consumer reads
// the word with an acquire load (GPU scope) and only then reads the data.
#pragma once

namespace deltaserve::cuda {

__device__ __forceinline__ void StoreRelease(unsigned* word, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(word), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned LoadAcquire(const unsigned* word) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(word) : "memory");
  return v;
}

}  // namespace deltaserve::cuda
