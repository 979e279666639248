// Plain C++ declarations shared by the CUDA launcher headers: the stream handle (declared the
// way the CUDA runtime declares it, so no CUDA header is needed to include a launcher header)
// and the element types a launcher can be asked for.
//
// Thread-safety: declarations only.
#pragma once

#include <cstdint>

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace deltaserve::cuda {

// Element type of a device tensor.
enum class DType { kF32, kBF16 };

inline int DTypeBytes(DType t) { return t == DType::kF32 ? 4 : 2; }
inline const char* DTypeName(DType t) { return t == DType::kF32 ? "f32" : "bf16"; }

// Whether `p` is a multiple of `bytes` (a power of two) apart from address 0.
inline bool IsAligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

}  // namespace deltaserve::cuda
