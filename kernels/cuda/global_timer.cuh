// The GPU's global nanosecond timer (shared by all SMs) and a spin on it (device code only).
#pragma once

namespace deltaserve::cuda {

__device__ __forceinline__ unsigned long long GlobalTimerNs() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

// Spins for about `ns` nanoseconds.
__device__ __forceinline__ void SleepNs(long long ns) {
  if (ns <= 0) return;
  const unsigned long long start = GlobalTimerNs();
  while (GlobalTimerNs() - start < static_cast<unsigned long long>(ns)) __nanosleep(128);
}

}  // namespace deltaserve::cuda
