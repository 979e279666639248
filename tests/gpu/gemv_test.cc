// Tests the small-batch GEMV kernels (kernels/cuda/gemv.h) against a float64 CPU reference:
// every input kind (bf16, f32 rounded to bf16, RMSNorm) and output kind (store, residual
// accumulate, SwiGLU) at 1, 3 and 8 rows, odd column counts, both rows-per-warp arrangements,
// padded strides with the padding checked untouched; two problems in one launch; a chain of
// programmatic launches where the second reads what the first writes over a NaN poison; and
// rejection of bad shapes, strides and alignment.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/gemv.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::FloatToBf16;

using GemvTest = ::deltaserve::testing::GpuTest;

float RoundBf16(float v) { return Bf16ToFloat(FloatToBf16(v)); }

struct Case {
  int rows;
  int64_t n, k;
  GemvInput in;
  GemvOutput out;
};

// The staged input row m as the kernel must see it (bf16 values), from host x.
std::vector<double> Staged(const Case& c, const std::vector<float>& xf,
                           const std::vector<uint16_t>& xb, int64_t ldx,
                           const std::vector<float>& gamma, int m) {
  std::vector<double> v(c.k);
  if (c.in == GemvInput::kBf16) {
    for (int64_t i = 0; i < c.k; ++i) v[i] = Bf16ToFloat(xb[m * ldx + i]);
  } else if (c.in == GemvInput::kF32) {
    for (int64_t i = 0; i < c.k; ++i) v[i] = RoundBf16(xf[m * ldx + i]);
  } else {
    double ss = 0;
    for (int64_t i = 0; i < c.k; ++i) ss += double{xf[m * ldx + i]} * xf[m * ldx + i];
    const double inv = 1.0 / std::sqrt(ss / c.k + 1e-5);
    // gemv.h: bf16(x * gamma), the 1/rms factor applied to the sums.
    for (int64_t i = 0; i < c.k; ++i)
      v[i] = RoundBf16(xf[m * ldx + i] * gamma[i]) * inv;
  }
  return v;
}

void RunCase(const Case& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " n " << c.n << " k " << c.k
                                    << " in " << static_cast<int>(c.in) << " out "
                                    << static_cast<int>(c.out));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const bool swiglu = c.out == GemvOutput::kSwiGluBf16;
  const int64_t ldx = c.k + 5, ldw = c.k + 16, ldo = c.n + 3;
  const int64_t wrows = swiglu ? 2 * c.n : c.n;
  std::vector<uint16_t> w(wrows * ldw);
  for (auto& e : w) e = FloatToBf16(nd(rng) * 0.05f);
  std::vector<float> xf(c.rows * ldx);
  std::vector<uint16_t> xb(c.rows * ldx);
  for (int64_t i = 0; i < c.rows * ldx; ++i) {
    xf[i] = nd(rng) * 2.0f + 0.3f;
    xb[i] = FloatToBf16(nd(rng));
  }
  std::vector<float> gamma(c.k);
  for (auto& g : gamma) g = 1.0f + 0.2f * nd(rng);
  const int ob = swiglu ? 2 : 4;
  std::vector<uint8_t> out0(c.rows * ldo * ob);
  for (auto& b : out0) b = static_cast<uint8_t>(rng() % 64);  // finite, small fp32 / bf16 values

  DeviceBuffer dw = DeviceBuffer::From(w);
  DeviceBuffer dx = c.in == GemvInput::kBf16 ? DeviceBuffer::From(xb) : DeviceBuffer::From(xf);
  DeviceBuffer dg = DeviceBuffer::From(gamma);
  DeviceBuffer dout = DeviceBuffer::From(out0);
  ASSERT_NE(dw.get(), nullptr);
  GemvArgs a;
  a.rows = c.rows;
  a.k = c.k;
  a.input = c.in;
  a.output = c.out;
  a.gamma = dg.get<float>();
  a.problems[0] = GemvProblem{dx.get(), ldx, dw.get(), ldw, c.n, dout.get(), ldo};
  ASSERT_TRUE(LaunchGemv(a, nullptr).ok());
  DS_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> got = dout.To<uint8_t>();

  const double tol_rel = c.in == GemvInput::kF32RmsNorm ? 4e-3 : 2e-4;
  int bad = 0;
  for (int m = 0; m < c.rows; ++m) {
    const std::vector<double> xs = Staged(c, xf, xb, ldx, gamma, m);
    for (int64_t j = 0; j < ldo; ++j) {
      const size_t at = (m * ldo + j) * ob;
      if (j >= c.n) {  // stride padding untouched
        if (std::memcmp(&got[at], &out0[at], ob) != 0) ++bad;
        continue;
      }
      double acc[2] = {0, 0}, mag[2] = {0, 0};
      for (int r = 0; r < (swiglu ? 2 : 1); ++r) {
        const uint16_t* wr = w.data() + (j + r * c.n) * ldw;
        for (int64_t i = 0; i < c.k; ++i) {
          acc[r] += xs[i] * Bf16ToFloat(wr[i]);
          mag[r] += std::fabs(xs[i] * Bf16ToFloat(wr[i]));
        }
      }
      double want, tol, have;
      if (swiglu) {
        const double s = acc[0] / (1.0 + std::exp(-acc[0]));
        want = s * acc[1];
        tol = 8e-3 * std::fabs(want) + 1.2 * tol_rel * mag[0] * std::fabs(acc[1]) +
              std::fabs(s) * tol_rel * mag[1] + 1e-6;
        uint16_t h;
        std::memcpy(&h, &got[at], 2);
        have = Bf16ToFloat(h);
      } else {
        float o0, o1;
        std::memcpy(&o0, &out0[at], 4);
        std::memcpy(&o1, &got[at], 4);
        want = acc[0] + (c.out == GemvOutput::kF32Accumulate ? o0 : 0.0);
        tol = tol_rel * mag[0] + 1e-6 * (1.0 + std::fabs(want));
        have = o1;
      }
      if (!(std::fabs(have - want) <= tol)) {
        if (bad < 5)
          ADD_FAILURE() << "row " << m << " col " << j << ": got " << have << " want " << want
                        << " tol " << tol;
        ++bad;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST_F(GemvTest, AllKindsBatch1) {
  uint32_t seed = 1;
  for (GemvInput in : {GemvInput::kBf16, GemvInput::kF32, GemvInput::kF32RmsNorm}) {
    for (GemvOutput out : {GemvOutput::kF32, GemvOutput::kF32Accumulate, GemvOutput::kSwiGluBf16}) {
      RunCase({1, 333, 2304, in, out}, seed++);
      RunCase({1, 37, 136, in, out}, seed++);
    }
  }
}

TEST_F(GemvTest, AllKindsLargerBatches) {
  uint32_t seed = 100;
  for (int rows : {2, 3, 8}) {
    for (GemvInput in : {GemvInput::kBf16, GemvInput::kF32, GemvInput::kF32RmsNorm}) {
      for (GemvOutput out :
           {GemvOutput::kF32, GemvOutput::kF32Accumulate, GemvOutput::kSwiGluBf16}) {
        RunCase({rows, 203, 1000, in, out}, seed++);
      }
    }
  }
}

TEST_F(GemvTest, WideAndLongShapes) {
  // n larger than the resident warps (each warp loops over rows); long k (6784, the hybrid MLP
  // width) stages 108 KB at 8 rows.
  RunCase({1, 8197, 264, GemvInput::kF32RmsNorm, GemvOutput::kF32}, 7);
  RunCase({5, 8193, 128, GemvInput::kBf16, GemvOutput::kF32Accumulate}, 8);
  RunCase({1, 61, 6784, GemvInput::kBf16, GemvOutput::kF32Accumulate}, 9);
  RunCase({8, 45, 6784, GemvInput::kBf16, GemvOutput::kF32Accumulate}, 10);
  RunCase({4, 1031, 2304, GemvInput::kF32RmsNorm, GemvOutput::kSwiGluBf16}, 11);
}

TEST_F(GemvTest, ShortRowsEightPerWarp) {
  // k <= 256 at 1-2 input rows takes eight weight rows per warp step: n not a multiple of 8,
  // k at the 256 boundary and below it, a grid smaller than the rows.
  RunCase({1, 4099, 128, GemvInput::kF32, GemvOutput::kF32}, 21);
  RunCase({2, 4093, 128, GemvInput::kBf16, GemvOutput::kF32Accumulate}, 22);
  RunCase({1, 2053, 256, GemvInput::kF32RmsNorm, GemvOutput::kF32Accumulate}, 23);
  RunCase({2, 9, 8, GemvInput::kF32RmsNorm, GemvOutput::kF32}, 24);
  RunCase({1, 1, 256, GemvInput::kBf16, GemvOutput::kF32}, 25);
}

TEST_F(GemvTest, TwoProblemsOneLaunch) {
  const int rows = 3;
  const int64_t k = 128, n0 = 40, n1 = 72, ldx = 300;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(rows * ldx);
  for (auto& v : x) v = nd(rng);
  std::vector<uint16_t> w0(n0 * k), w1(n1 * k);
  for (auto& e : w0) e = FloatToBf16(nd(rng) * 0.1f);
  for (auto& e : w1) e = FloatToBf16(nd(rng) * 0.1f);
  DeviceBuffer dx = DeviceBuffer::From(x), dw0 = DeviceBuffer::From(w0),
               dw1 = DeviceBuffer::From(w1);
  DeviceBuffer o0(rows * n0 * 4), o1(rows * n1 * 4);
  GemvArgs a;
  a.rows = rows;
  a.k = k;
  a.input = GemvInput::kF32;
  a.output = GemvOutput::kF32;
  // Problem 0 reads columns [0, 128) of x, problem 1 columns [150, 278).
  a.problems[0] = GemvProblem{dx.get<float>(), ldx, dw0.get(), k, n0, o0.get(), n0};
  a.problems[1] = GemvProblem{dx.get<float>() + 150, ldx, dw1.get(), k, n1, o1.get(), n1};
  a.num_problems = 2;
  ASSERT_TRUE(LaunchGemv(a, nullptr).ok());
  DS_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> g0 = o0.To<float>(), g1 = o1.To<float>();
  for (int p = 0; p < 2; ++p) {
    const int64_t n = p == 0 ? n0 : n1, col = p == 0 ? 0 : 150;
    const std::vector<uint16_t>& w = p == 0 ? w0 : w1;
    const std::vector<float>& g = p == 0 ? g0 : g1;
    for (int m = 0; m < rows; ++m) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0, mag = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double t = RoundBf16(x[m * ldx + col + i]) * double{Bf16ToFloat(w[j * k + i])};
          acc += t;
          mag += std::fabs(t);
        }
        ASSERT_NEAR(g[m * n + j], acc, 2e-4 * mag + 1e-6) << "problem " << p << " row " << m
                                                          << " col " << j;
      }
    }
  }
}

TEST_F(GemvTest, ProgrammaticChainReadsPredecessorOutput) {
  // A: h = x W1^T (programmatic, triggers its dependents at once); B: out = bf16(h) W2^T
  // (programmatic). h starts as NaN: B must wait for A before staging it.
  const int rows = 2;
  const int64_t k1 = 2304, n1 = 4096, n2 = 777;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint16_t> x(rows * k1), w1(n1 * k1), w2(n2 * n1);
  for (auto& e : x) e = FloatToBf16(nd(rng));
  for (auto& e : w1) e = FloatToBf16(nd(rng) * 0.03f);
  for (auto& e : w2) e = FloatToBf16(nd(rng) * 0.03f);
  DeviceBuffer dx = DeviceBuffer::From(x), dw1 = DeviceBuffer::From(w1),
               dw2 = DeviceBuffer::From(w2);
  DeviceBuffer dh = DeviceBuffer::From(std::vector<float>(rows * n1, NAN));
  DeviceBuffer dout(rows * n2 * 4);
  cudaStream_t s;
  DS_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (int iter = 0; iter < 3; ++iter) {
    DS_CUDA_OK(cudaMemsetAsync(dh.get(), 0xff, rows * n1 * 4, s));  // NaN
    GemvArgs a;
    a.rows = rows;
    a.k = k1;
    a.input = GemvInput::kBf16;
    a.output = GemvOutput::kF32;
    a.problems[0] = GemvProblem{dx.get(), k1, dw1.get(), k1, n1, dh.get(), n1};
    a.programmatic = true;
    ASSERT_TRUE(LaunchGemv(a, s).ok());
    GemvArgs b;
    b.rows = rows;
    b.k = n1;
    b.input = GemvInput::kF32;
    b.output = GemvOutput::kF32;
    b.problems[0] = GemvProblem{dh.get(), n1, dw2.get(), n1, n2, dout.get(), n2};
    b.programmatic = true;
    ASSERT_TRUE(LaunchGemv(b, s).ok());
    DS_CUDA_OK(cudaStreamSynchronize(s));
    const std::vector<float> h = dh.To<float>(), out = dout.To<float>();
    for (int m = 0; m < rows; ++m) {
      for (int64_t j = 0; j < n2; ++j) {
        double acc = 0, mag = 0;
        for (int64_t i = 0; i < n1; ++i) {
          const double t = RoundBf16(h[m * n1 + i]) * double{Bf16ToFloat(w2[j * n1 + i])};
          acc += t;
          mag += std::fabs(t);
        }
        ASSERT_NEAR(out[m * n2 + j], acc, 2e-4 * mag + 1e-6) << "iter " << iter << " row " << m
                                                             << " col " << j;
      }
    }
  }
  cudaStreamDestroy(s);
}

TEST_F(GemvTest, RejectsBadArguments) {
  DeviceBuffer x(1 << 16), w(1 << 16), o(1 << 16), g(1 << 12);
  auto base = [&] {
    GemvArgs a;
    a.rows = 2;
    a.k = 64;
    a.problems[0] = GemvProblem{x.get(), 64, w.get(), 64, 32, o.get(), 32};
    return a;
  };
  ASSERT_TRUE(LaunchGemv(base(), nullptr).ok());
  DS_CUDA_OK(cudaDeviceSynchronize());
  auto expect_bad = [&](GemvArgs a, const std::string& field) {
    const absl::Status s = LaunchGemv(a, nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(std::string(s.message()).find(field), std::string::npos) << s.message();
  };
  GemvArgs a = base();
  a.rows = kGemvMaxRows + 1;
  expect_bad(a, "rows");
  a = base();
  a.k = 60;
  expect_bad(a, "k 60");
  a = base();
  a.problems[0].ldw = 68;  // >= k but not a multiple of 8
  expect_bad(a, "ldw");
  a = base();
  a.problems[0].w = static_cast<char*>(w.get()) + 2;  // misaligned rows
  expect_bad(a, "aligned");
  a = base();
  a.problems[0].ldx = 63;
  expect_bad(a, "ldx");
  a = base();
  a.problems[0].ldo = 31;
  expect_bad(a, "ldo");
  a = base();
  a.input = GemvInput::kF32RmsNorm;
  expect_bad(a, "gamma");
  a = base();
  a.num_problems = 3;
  expect_bad(a, "num_problems");
  a = base();
  a.problems[0].n = 0;
  expect_bad(a, "n 0");
  a = base();
  a.k = int64_t{1} << 20;  // staged input larger than shared memory
  a.problems[0].ldw = a.k;
  a.problems[0].ldx = a.k;
  expect_bad(a, "shared memory");
}

}  // namespace
}  // namespace deltaserve::cuda
