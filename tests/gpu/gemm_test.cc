// Tests the cuBLASLt products (kernels/cuda/gemm.h) against a float64 CPU reference: bf16
// operands with f32 output and residual accumulation; f32 operands with TF32 multiplies as a
// strided batch laid out the way the runner uses it (two rank-128 inputs side by side in one
// activation row, two stacked weights, two output blocks); and rejection of bad strides and
// alignment.
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

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override { DS_SKIP_WITHOUT_GPU(); }
};

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

TEST_F(GemmTest, Tf32StridedBatchAsTheGateProducts) {
  // Rows of 300 floats; the two inputs are columns [40, 168) and [168, 296).
  const int64_t M = 37, N = 256, K = 128, ldx = 300, col0 = 40, rows_cap = 48;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(M * ldx), w(2 * N * K);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = nd(rng);
  // Output: block 0 then block 1, rows_cap * N apart; the rest is poison that must survive.
  std::vector<float> out(2 * rows_cap * N, 12345.0f);
  DeviceBuffer dx = DeviceBuffer::From(x), dw = DeviceBuffer::From(w);
  DeviceBuffer dout = DeviceBuffer::From(out);
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  ASSERT_TRUE((*gemm)->RunTf32Batched(M, N, K, dx.get<float>() + col0, ldx, K, dw.get<float>(), K,
                                      N * K, dout.get<float>(), N, rows_cap * N, 2, nullptr)
                  .ok());
  const std::vector<float> got = dout.To<float>();
  for (int p = 0; p < 2; ++p) {
    std::vector<double> g, r;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; ++k)
          acc += double{x[m * ldx + col0 + p * K + k]} * w[(p * N + n) * K + k];
        r.push_back(acc);
        g.push_back(got[p * rows_cap * N + m * N + n]);
      }
    }
    EXPECT_LT(RelErr(g, r), 3e-3) << "problem " << p;  // TF32: 10-bit mantissa products
    for (int64_t i = M * N; i < rows_cap * N; ++i)
      ASSERT_EQ(got[p * rows_cap * N + i], 12345.0f) << "problem " << p << " wrote past row M";
  }
}

TEST_F(GemmTest, Tf32RejectsBadStridesAndAlignment) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  DeviceBuffer buf(1 << 20);
  float* p = buf.get<float>();
  EXPECT_FALSE((*gemm)->RunTf32Batched(4, 8, 8, p, 10, 8, p, 8, 64, p, 8, 32, 2, nullptr).ok());
  EXPECT_FALSE((*gemm)->RunTf32Batched(4, 8, 8, p + 1, 8, 8, p, 8, 64, p, 8, 32, 2, nullptr).ok());
  EXPECT_FALSE((*gemm)->RunTf32Batched(4, 8, 8, p, 8, 8, p, 8, 64, p, 8, 32, 0, nullptr).ok());
  EXPECT_FALSE((*gemm)->RunTf32Batched(4, 8, 8, p, 4, 8, p, 8, 64, p, 8, 32, 2, nullptr).ok());
}

}  // namespace
}  // namespace deltaserve::cuda
