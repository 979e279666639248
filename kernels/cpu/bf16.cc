// Bulk bf16 conversions (see bf16.h).
#include "kernels/cpu/bf16.h"

namespace deltaserve::cpu {

void Bf16ToFloatN(const void* src, float* dst, int64_t n) {
  const unsigned char* s = static_cast<const unsigned char*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, s + 2 * i, 2);
    dst[i] = Bf16ToFloat(v);
  }
}

void FloatToBf16N(const float* src, void* dst, int64_t n) {
  unsigned char* d = static_cast<unsigned char*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t v = FloatToBf16(src[i]);
    std::memcpy(d + 2 * i, &v, 2);
  }
}

}  // namespace deltaserve::cpu
