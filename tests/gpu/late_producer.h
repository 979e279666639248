// A producer for tests of programmatic (overlapped) launches: a kernel that lets its
// programmatic dependents start at once, then waits about `delay_ns` before it copies n floats
// from `src` to `dst`. A dependent that reads `dst` before its dependency wait (or before
// something that orders it after this kernel) sees what was there before, typically a poison.
//
// Thread-safety: test-only; the launch is ordered on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace deltaserve::testing {

cudaError_t LaunchLateCopy(const float* src, float* dst, int64_t n, int64_t delay_ns,
                           cudaStream_t stream);

}  // namespace deltaserve::testing
