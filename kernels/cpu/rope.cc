// NeoX RoPE (see rope.h).
#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

namespace deltaserve::cpu {

void ApplyRopeNeox(float* x, int64_t ld, int64_t rows, int64_t pos0, int heads, int head_size,
                   int rope_dims, double base) {
  const int half = rope_dims / 2;
  if (half == 0) return;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    inv_freq[i] = std::pow(base, -2.0 * i / static_cast<double>(rope_dims));
  }
  std::vector<float> cs(half), sn(half);
  for (int64_t r = 0; r < rows; ++r) {
    const double pos = static_cast<double>(pos0 + r);
    for (int i = 0; i < half; ++i) {
      const double th = pos * inv_freq[i];
      cs[i] = static_cast<float>(std::cos(th));
      sn[i] = static_cast<float>(std::sin(th));
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + r * ld + static_cast<int64_t>(h) * head_size;
      for (int i = 0; i < half; ++i) {
        const float a = v[i];
        const float b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

}  // namespace deltaserve::cpu
