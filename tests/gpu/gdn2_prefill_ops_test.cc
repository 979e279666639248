// GPU tests of the row-wise GDN-2 prefill kernels (kernels/cuda/gdn2_prefill_ops.h) against a
// float64 host reference: q/k norms, log-decay, erase (with and without allow_neg_eigval) and
// write gates for grouped value heads; output RMSNorm and gate (SiLU and sigmoid, f32 and bf16).
#include "kernels/cuda/gdn2_prefill_ops.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;

double SoftplusRef(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
double SigmoidRef(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<float> Random(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double tol,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << what << "[" << i << "]";
}

TEST(Gdn2PrefillOpsTest, Gates) {
  DS_SKIP_WITHOUT_GPU();
  for (bool neg : {false, true}) {
    Gdn2DecodeShape s;
    s.num_heads = 2;
    s.num_v_heads = 4;
    s.allow_neg_eigval = neg;
    const int64_t rows = 37, kd = s.key_dim(), vd = s.value_dim(), dk = s.head_k_dim;
    std::mt19937 rng(neg ? 2 : 1);
    auto q = Random(rows * kd, rng, 1.f), k = Random(rows * kd, rng, 1.f),
         f = Random(rows * kd, rng, 3.f), b = Random(rows * kd, rng, 2.f),
         w = Random(rows * vd, rng, 2.f), a_log = Random(s.num_heads, rng, 1.f),
         dt = Random(kd, rng, 1.f);
    f[0] = 30.f;  // the softplus threshold branch
    DeviceBuffer dq = DeviceBuffer::From(q), dkk = DeviceBuffer::From(k), df = DeviceBuffer::From(f),
                 db = DeviceBuffer::From(b), dw = DeviceBuffer::From(w),
                 da = DeviceBuffer::From(a_log), ddt = DeviceBuffer::From(dt);
    Gdn2PrefillGatesArgs a;
    a.rows = rows;
    a.q = dq.get<float>();
    a.k = dkk.get<float>();
    a.f = df.get<float>();
    a.b = db.get<float>();
    a.w = dw.get<float>();
    a.q_stride = a.k_stride = a.f_stride = a.b_stride = kd;
    a.w_stride = vd;
    a.a_log = da.get<float>();
    a.dt_bias = ddt.get<float>();
    ASSERT_TRUE(LaunchGdn2PrefillGates(s, a, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<double> rq(q.size()), rk(k.size()), rf(f.size()), rb(b.size()), rw(w.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int h = 0; h < s.num_heads; ++h) {
        double sq = 0, sk = 0;
        for (int c = 0; c < dk; ++c) {
          sq += double(q[r * kd + h * dk + c]) * q[r * kd + h * dk + c];
          sk += double(k[r * kd + h * dk + c]) * k[r * kd + h * dk + c];
        }
        for (int c = 0; c < dk; ++c) {
          const int64_t i = r * kd + h * dk + c;
          rq[i] = q[i] / std::sqrt(sq + 1e-6) / std::sqrt(double(dk));
          rk[i] = k[i] / std::sqrt(sk + 1e-6);
          rf[i] = -std::exp(double(a_log[h])) * SoftplusRef(double(f[i]) + dt[h * dk + c]);
          rb[i] = SigmoidRef(b[i]) * (neg ? 2 : 1);
        }
      }
      for (int64_t c = 0; c < vd; ++c) rw[r * vd + c] = SigmoidRef(w[r * vd + c]);
    }
    ExpectClose(dq.To<float>(), rq, 1e-5, "q");
    ExpectClose(dkk.To<float>(), rk, 1e-5, "k");
    ExpectClose(df.To<float>(), rf, 1e-5, "g");
    ExpectClose(db.To<float>(), rb, 1e-5, "b");
    ExpectClose(dw.To<float>(), rw, 1e-5, "w");
  }
}

TEST(Gdn2PrefillOpsTest, Output) {
  DS_SKIP_WITHOUT_GPU();
  for (bool sig : {false, true})
    for (DType yt : {DType::kF32, DType::kBF16}) {
      Gdn2DecodeShape s;
      s.num_heads = 2;
      s.num_v_heads = 4;
      s.gate_sigmoid = sig;
      const int64_t rows = 29, vd = s.value_dim(), dv = s.head_v_dim;
      std::mt19937 rng(7 + sig);
      auto o = Random(rows * vd, rng, 1.f), z = Random(rows * vd, rng, 2.f),
           zb = Random(vd, rng, 1.f), on = Random(dv, rng, 1.f);
      DeviceBuffer d_o = DeviceBuffer::From(o), d_z = DeviceBuffer::From(z),
                   d_zb = DeviceBuffer::From(zb), d_on = DeviceBuffer::From(on);
      DeviceBuffer d_y(rows * vd * DTypeBytes(yt));
      Gdn2PrefillOutputArgs a;
      a.rows = rows;
      a.o = d_o.get<float>();
      a.z = d_z.get<float>();
      a.o_stride = a.z_stride = a.y_stride = vd;
      a.z_bias = d_zb.get<float>();
      a.o_norm = d_on.get<float>();
      a.y = d_y.get();
      a.y_type = yt;
      ASSERT_TRUE(LaunchGdn2PrefillOutput(s, a, nullptr).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<double> ref(rows * vd);
      for (int64_t r = 0; r < rows; ++r)
        for (int hv = 0; hv < s.num_v_heads; ++hv) {
          double ss = 0;
          for (int j = 0; j < dv; ++j) ss += double(o[r * vd + hv * dv + j]) * o[r * vd + hv * dv + j];
          const double inv = 1.0 / std::sqrt(ss / dv + s.norm_eps);
          for (int j = 0; j < dv; ++j) {
            const int64_t i = r * vd + hv * dv + j;
            const double zz = double(z[i]) + zb[hv * dv + j];
            const double act = sig ? SigmoidRef(zz) : zz * SigmoidRef(zz);
            ref[i] = o[i] * inv * on[j] * act;
          }
        }
      std::vector<float> got(rows * vd);
      if (yt == DType::kF32) {
        got = d_y.To<float>();
      } else {
        const auto raw = d_y.To<uint16_t>();
        for (size_t i = 0; i < got.size(); ++i) got[i] = Bf16ToFloat(raw[i]);
      }
      ExpectClose(got, ref, yt == DType::kF32 ? 1e-5 : 8e-3, "y");
    }
}

TEST(Gdn2PrefillOpsTest, RejectsBadArguments) {
  Gdn2DecodeShape s;
  s.head_k_dim = 48;
  Gdn2PrefillGatesArgs g;
  g.rows = 1;
  EXPECT_EQ(LaunchGdn2PrefillGates(s, g, nullptr).code(), absl::StatusCode::kInvalidArgument);
  s.head_k_dim = 128;
  EXPECT_EQ(LaunchGdn2PrefillGates(s, g, nullptr).code(), absl::StatusCode::kInvalidArgument);
  Gdn2PrefillOutputArgs o;
  o.rows = 1;
  EXPECT_EQ(LaunchGdn2PrefillOutput(s, o, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::cuda
