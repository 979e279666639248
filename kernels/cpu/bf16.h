// bf16 <-> fp32 conversions for CPU code (bit-exact with the CUDA intrinsics: round to nearest
// even on the way down, NaN stays NaN).
#pragma once

#include <cstdint>
#include <cstring>

namespace deltaserve::cpu {

inline float Bf16ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Converts n values; `src`/`dst` may be unaligned byte buffers of a state slot.
void Bf16ToFloatN(const void* src, float* dst, int64_t n);
void FloatToBf16N(const float* src, void* dst, int64_t n);

}  // namespace deltaserve::cpu
