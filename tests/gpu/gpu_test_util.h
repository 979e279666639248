// Helpers for the GPU tests: skipping when no device is present (GpuTest, the tests' fixture),
// RAII device buffers, bf16 conversion on the host, and error norms.
//
// Thread-safety: test-only, single-threaded.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace deltaserve::testing {

inline bool HaveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define DS_SKIP_WITHOUT_GPU() \
  if (!::deltaserve::testing::HaveGpu()) GTEST_SKIP() << "no CUDA device"

// Fixture of the GPU tests: each test is skipped when no device is present.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override { DS_SKIP_WITHOUT_GPU(); }
};

#define DS_CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// Owns a device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0 && cudaMalloc(&ptr_, bytes) != cudaSuccess) ptr_ = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }

  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

  template <typename T>
  static DeviceBuffer From(const std::vector<T>& host) {
    DeviceBuffer b(host.size() * sizeof(T));
    if (b.ptr_ != nullptr)
      cudaMemcpy(b.ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    return b;
  }
  template <typename T>
  std::vector<T> To() const {
    std::vector<T> host(bytes_ / sizeof(T));
    cudaMemcpy(host.data(), ptr_, host.size() * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Element e of a host array of fp32 values, or of bf16 values (rounded to nearest even when
// stored), that starts at byte address `at` (any alignment).
inline float LoadElem(const void* at, int64_t e, bool bf16) {
  const char* p = static_cast<const char*>(at);
  if (bf16) {
    uint16_t h;
    std::memcpy(&h, p + 2 * e, 2);
    return Bf16ToFloat(h);
  }
  float f;
  std::memcpy(&f, p + 4 * e, 4);
  return f;
}
inline void StoreElem(void* at, int64_t e, float x, bool bf16) {
  char* p = static_cast<char*>(at);
  if (bf16) {
    const uint16_t h = FloatToBf16(x);
    std::memcpy(p + 2 * e, &h, 2);
  } else {
    std::memcpy(p + 4 * e, &x, 4);
  }
}

// ||a - b|| / ||b||, with NaN anywhere giving +inf.
inline double RelErr(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1e-300));
}

}  // namespace deltaserve::testing
