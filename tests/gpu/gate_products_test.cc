// Tests the gate up-projections kernel (kernels/cuda/gate_products.h) against a float64 CPU
// reference on the bf16-rounded inputs (f32 or bf16 in memory): row counts that are and are not multiples of the tile,
// ranks 16..128, strided inputs and outputs (columns past the widths and rows past `rows` stay
// untouched), a programmatic launch right after a kernel that writes the inputs, and rejections.
#include <cuda_runtime.h>

#include <cmath>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gate_products.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::FloatToBf16;
using ::deltaserve::testing::RelErr;

using GateProductsTest = ::deltaserve::testing::GpuTest;

constexpr float kPoison = 12345.0f;

// rows x rank inputs f0 | g0 side by side in rows of ld_in elements of in_type (f0 at column 8,
// g0 after it); outputs with 16 spare columns and 3 spare rows of poison.
void RunCase(int rows, int rank, int64_t nf, int64_t nz, bool programmatic, unsigned seed,
             DType in_type = DType::kF32) {
  SCOPED_TRACE(::testing::Message() << "rows " << rows << " rank " << rank << " nf " << nf
                                  << " nz " << nz << " programmatic " << programmatic
                                  << " bf16 in " << (in_type == DType::kBF16));
  const bool bf16 = in_type == DType::kBF16;
  const int64_t ld_in = 2 * rank + 24, ld_f = nf + 16, ld_z = nz + 16, cap = rows + 3;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> in(static_cast<size_t>(rows) * ld_in);
  std::vector<uint16_t> in_b(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    in_b[i] = FloatToBf16(nd(rng));
    in[i] = bf16 ? Bf16ToFloat(in_b[i]) : nd(rng);
  }
  std::vector<uint16_t> f_up(static_cast<size_t>(nf) * rank), z_up(static_cast<size_t>(nz) * rank);
  for (auto* w : {&f_up, &z_up})
    for (auto& v : *w) v = FloatToBf16(nd(rng) / std::sqrt(static_cast<float>(rank)));
  DeviceBuffer d_in = bf16 ? DeviceBuffer::From(in_b) : DeviceBuffer::From(in);
  DeviceBuffer d_fup = DeviceBuffer::From(f_up), d_zup = DeviceBuffer::From(z_up);
  DeviceBuffer d_f = DeviceBuffer::From(std::vector<float>(cap * ld_f, kPoison));
  DeviceBuffer d_z = DeviceBuffer::From(std::vector<float>(cap * ld_z, kPoison));

  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  if (programmatic) {
    // The producer rewrites the inputs right before the launch; the products must use its values.
    ASSERT_TRUE(LaunchFillRandom(d_in.get(), in_type, static_cast<int64_t>(in.size()),
                                 seed + 1, 1.0f, 0.0f, stream)
                    .ok());
  }
  GateProductsArgs a;
  a.rows = rows;
  a.rank = rank;
  const int64_t eb = DTypeBytes(in_type);
  a.f0 = d_in.get<char>() + 8 * eb;
  a.g0 = d_in.get<char>() + (8 + rank) * eb;
  a.ld_in = ld_in;
  a.in_type = in_type;
  a.f_up = d_fup.get();
  a.nf = nf;
  a.z_up = d_zup.get();
  a.nz = nz;
  a.f = d_f.get<float>();
  a.ld_f = ld_f;
  a.z = d_z.get<float>();
  a.ld_z = ld_z;
  a.programmatic = programmatic;
  const absl::Status st = LaunchGateProducts(a, stream);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  if (programmatic && bf16) {
    in_b = d_in.To<uint16_t>();
    for (size_t i = 0; i < in.size(); ++i) in[i] = Bf16ToFloat(in_b[i]);
  } else if (programmatic) {
    in = d_in.To<float>();
  }

  const std::vector<float> got_f = d_f.To<float>(), got_z = d_z.To<float>();
  for (int p = 0; p < 2; ++p) {
    const std::vector<uint16_t>& w = p == 0 ? f_up : z_up;
    const std::vector<float>& got = p == 0 ? got_f : got_z;
    const int64_t n = p == 0 ? nf : nz, ld = p == 0 ? ld_f : ld_z;
    std::vector<double> g, r;
    for (int m = 0; m < rows; ++m) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0.0;
        for (int k = 0; k < rank; ++k) {
          const float x = in[static_cast<size_t>(m) * ld_in + 8 + p * rank + k];
          acc += double{Bf16ToFloat(FloatToBf16(x))} * Bf16ToFloat(w[j * rank + k]);
        }
        r.push_back(acc);
        g.push_back(got[m * ld + j]);
      }
      for (int64_t j = n; j < ld; ++j) ASSERT_EQ(got[m * ld + j], kPoison) << "column " << j;
    }
    EXPECT_LT(RelErr(g, r), 1e-5) << "problem " << p;
    for (int64_t i = rows * ld; i < cap * ld; ++i) ASSERT_EQ(got[i], kPoison) << "past row M";
  }
}

TEST_F(GateProductsTest, MatchesTheBf16ProductsAtTheModelShape) {
  RunCase(1, 128, 2048, 2048, false, 1);
  RunCase(64, 128, 2048, 2048, false, 2);
  RunCase(256, 128, 2048, 2048, false, 3);
  RunCase(300, 128, 2048, 2048, false, 4);  // a partial last row tile
}

TEST_F(GateProductsTest, OtherRanksAndWidths) {
  RunCase(37, 16, 64, 128, false, 5);
  RunCase(70, 48, 192, 64, false, 6);
  RunCase(5, 112, 128, 256, false, 7);
}

TEST_F(GateProductsTest, ProgrammaticLaunchReadsTheProducersInputs) {
  RunCase(256, 128, 2048, 2048, true, 8);
  RunCase(3, 64, 128, 128, true, 9);
}

// bf16 inputs (a bf16 input projection): copied into the products unchanged.
TEST_F(GateProductsTest, Bf16Inputs) {
  RunCase(256, 128, 2048, 2048, false, 10, DType::kBF16);
  RunCase(300, 128, 2048, 2048, true, 11, DType::kBF16);
  RunCase(37, 16, 64, 128, false, 12, DType::kBF16);
  RunCase(5, 112, 128, 256, true, 13, DType::kBF16);
}

TEST_F(GateProductsTest, RejectsBadShapesAndAlignment) {
  DeviceBuffer buf(1 << 20);
  float* p = buf.get<float>();
  GateProductsArgs a;
  a.rows = 4;
  a.rank = 128;
  a.f0 = a.g0 = p;
  a.ld_in = 256;
  a.f_up = a.z_up = p;
  a.nf = a.nz = 64;
  a.f = a.z = p;
  a.ld_f = a.ld_z = 64;
  EXPECT_TRUE(LaunchGateProducts(a, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // Each edit makes the arguments invalid.
  const std::vector<std::pair<const char*, std::function<void(GateProductsArgs&)>>> bad = {
      {"rank not a multiple of 16", [](GateProductsArgs& b) { b.rank = 24; }},
      {"rank above 128", [](GateProductsArgs& b) { b.rank = 144; }},
      {"nf not a multiple of 64", [](GateProductsArgs& b) { b.nf = 96; }},
      {"ld_in below the rank", [](GateProductsArgs& b) { b.ld_in = 100; }},
      {"ld_in not a multiple of 4", [](GateProductsArgs& b) { b.ld_in = 130; }},
      {"misaligned f0", [p](GateProductsArgs& b) { b.f0 = p + 1; }},
      {"bf16 f0 not 8-byte aligned",
       [p](GateProductsArgs& b) {
         b.in_type = DType::kBF16;
         b.f0 = reinterpret_cast<const char*>(p) + 4;
       }},
      {"in_type f16", [](GateProductsArgs& b) { b.in_type = static_cast<DType>(7); }},
      {"null z_up", [](GateProductsArgs& b) { b.z_up = nullptr; }},
  };
  for (const auto& [what, edit] : bad) {
    GateProductsArgs b = a;
    edit(b);
    EXPECT_FALSE(LaunchGateProducts(b, nullptr).ok()) << what;
  }
  GateProductsArgs none = a;
  none.rows = 0;
  EXPECT_TRUE(LaunchGateProducts(none, nullptr).ok());
}

}  // namespace
}  // namespace deltaserve::cuda
