// Tests the cuBLASLt products (kernels/cuda/gemm.h) against a float64 CPU reference: bf16
// operands with f32 output and residual accumulation.
#include <cuda_runtime.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/gemm.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::FloatToBf16;
using ::deltaserve::testing::RelErr;

using GemmTest = ::deltaserve::testing::GpuTest;

TEST_F(GemmTest, Bf16OperandsAccumulateIntoF32) {
  const int64_t M = 5, N = 64, K = 96;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> x(M * K), w(N * K);
  std::vector<float> out(M * N);
  for (auto& v : x) v = FloatToBf16(nd(rng));
  for (auto& v : w) v = FloatToBf16(nd(rng));
  for (auto& v : out) v = nd(rng);
  DeviceBuffer dx = DeviceBuffer::From(x), dw = DeviceBuffer::From(w);
  DeviceBuffer dout = DeviceBuffer::From(out);
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  ASSERT_TRUE((*gemm)->Run(M, N, K, dx.get(), K, dw.get(), K, dout.get(), N, DType::kF32, 1.0f,
                           nullptr).ok());
  const std::vector<float> got = dout.To<float>();
  std::vector<double> g, r;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = out[m * N + n];
      for (int64_t k = 0; k < K; ++k)
        acc += double{Bf16ToFloat(x[m * K + k])} * Bf16ToFloat(w[n * K + k]);
      r.push_back(acc);
      g.push_back(got[m * N + n]);
    }
  }
  EXPECT_LT(RelErr(g, r), 1e-5);
}

}  // namespace
}  // namespace deltaserve::cuda
