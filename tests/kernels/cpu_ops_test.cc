// CPU ops (kernels/cpu) against direct double-precision evaluations of their definitions:
// the GDN-2 recurrence in its matrix form, the short convolution across chunk boundaries, the
// ring-buffer sliding-window attention against attention over the full history, RoPE, Linear,
// and bf16 rounding.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gdn2_recurrence.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/short_conv.h"
#include "kernels/cpu/swa_attention.h"

namespace deltaserve::cpu {
namespace {

std::vector<float> Random(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(u(rng));
  return v;
}

double RelErr(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// S_t = (I - k (b*k)^T) diag(exp g) S_{t-1} + k (w*v)^T;  o_t = S_t^T q.
TEST(Gdn2RecurrenceTest, MatchesMatrixForm) {
  const int T = 12, dk = 16, dv = 24;
  auto q = Random(T * dk, 1), k = Random(T * dk, 2), v = Random(T * dv, 3);
  auto g = Random(T * dk, 4, -3, 0), b = Random(T * dk, 5, 0, 2), w = Random(T * dv, 6, 0, 1);
  auto s0 = Random(dk * dv, 7);
  std::vector<float> state = s0, o(T * dv), scratch(3 * dv + 2 * dk);
  Gdn2HeadArgs a;
  a.T = T;
  a.dk = dk;
  a.dv = dv;
  a.q = q.data();
  a.ld_q = dk;
  a.k = k.data();
  a.ld_k = dk;
  a.g = g.data();
  a.ld_g = dk;
  a.b = b.data();
  a.ld_b = dk;
  a.v = v.data();
  a.ld_v = dv;
  a.w = w.data();
  a.ld_w = dv;
  a.state = state.data();
  a.o = o.data();
  a.ld_o = dv;
  a.scratch = scratch.data();
  Gdn2HeadRecurrence(a);

  std::vector<double> S(s0.begin(), s0.end()), want_o(T * dv);
  for (int t = 0; t < T; ++t) {
    std::vector<double> D(dk * dv);
    for (int i = 0; i < dk; ++i) {
      for (int j = 0; j < dv; ++j) D[i * dv + j] = std::exp(double(g[t * dk + i])) * S[i * dv + j];
    }
    for (int i = 0; i < dk; ++i) {
      for (int j = 0; j < dv; ++j) {
        double proj = 0;  // ((b*k)^T D)[j]
        for (int m = 0; m < dk; ++m) proj += double(b[t * dk + m]) * k[t * dk + m] * D[m * dv + j];
        S[i * dv + j] = D[i * dv + j] - double(k[t * dk + i]) * proj +
                        double(k[t * dk + i]) * w[t * dv + j] * v[t * dv + j];
      }
    }
    for (int j = 0; j < dv; ++j) {
      double acc = 0;
      for (int i = 0; i < dk; ++i) acc += S[i * dv + j] * q[t * dk + i];
      want_o[t * dv + j] = acc;
    }
  }
  EXPECT_LE(RelErr(o, want_o), 1e-5);
  EXPECT_LE(RelErr(state, S), 1e-5);
}

TEST(ShortConvTest, ChunksWithHistoryEqualWholeSequence) {
  for (int W : {1, 2, 4}) {
    const int T = 11, C = 5, H = W - 1;
    auto x = Random(T * C, 10 + W);
    auto w_t = Random(W * C, 20 + W);
    std::vector<double> want(T * C, 0.0);
    for (int t = 0; t < T; ++t) {
      for (int c = 0; c < C; ++c) {
        double acc = 0;
        for (int j = 0; j < W; ++j) {
          const int src = t - H + j;
          if (src >= 0) acc += double(w_t[j * C + c]) * x[src * C + c];
        }
        want[t * C + c] = acc / (1.0 + std::exp(-acc));  // SiLU
      }
    }
    std::vector<float> hist(std::max(H, 1) * C, 0.0f), y(T * C);
    int start = 0;
    for (int len : {1, 2, 5, 3}) {  // chunks shorter and longer than the history
      ShortConvWithHistory(x.data() + start * C, C, len, C, w_t.data(), W, hist.data(), true,
                           y.data() + start * C, C);
      start += len;
    }
    ASSERT_EQ(start, T);
    EXPECT_LE(RelErr(y, want), 1e-6) << "W=" << W;
    for (int r = 0; r < H; ++r) {
      for (int c = 0; c < C; ++c) EXPECT_EQ(hist[r * C + c], x[(T - H + r) * C + c]);
    }
  }
}

// Ring attention over chunks of tokens against attention over the full history; a bf16 ring
// rounds the keys and values of earlier chunks, a chunk's own enter in fp32.
void CheckRingEqualsFullHistoryWindow(bool ring_bf16) {
  const int T = 40, window = 7, qh = 2, hs = 8;
  const std::vector<int> chunks = {3, 1, 9, 20, 7};
  auto q = Random(T * qh * hs, 30), k = Random(T * hs, 31), v = Random(T * hs, 32);
  std::vector<int> chunk_start(T);
  for (int c = 0, t = 0; c < static_cast<int>(chunks.size()); ++c) {
    for (int i = 0; i < chunks[c]; ++i) chunk_start[t + i] = t;
    t += chunks[c];
  }
  // What token t sees of position s: stored in the ring if s is from an earlier chunk.
  auto seen = [&](const std::vector<float>& x, int t, int s, int i) {
    const float f = x[s * hs + i];
    return ring_bf16 && s < chunk_start[t] ? Bf16ToFloat(FloatToBf16(f)) : f;
  };
  std::vector<double> want(T * qh * hs, 0.0);
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < qh; ++h) {
      const int first = std::max(0, t - window + 1);
      std::vector<double> p;
      double mx = -1e300;
      for (int s = first; s <= t; ++s) {
        double dot = 0;
        for (int i = 0; i < hs; ++i) dot += double(q[(t * qh + h) * hs + i]) * seen(k, t, s, i);
        p.push_back(dot / std::sqrt(double(hs)));
        mx = std::max(mx, p.back());
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int s = first; s <= t; ++s) {
        for (int i = 0; i < hs; ++i) {
          want[(t * qh + h) * hs + i] += p[s - first] / sum * seen(v, t, s, i);
        }
      }
    }
  }
  // Room for either element type.
  std::vector<float> kr(window * hs, 0), vr(window * hs, 0), out(T * qh * hs), scratch(window);
  int start = 0;
  for (int len : chunks) {
    SwaGroupArgs a;
    a.T = len;
    a.pos0 = start;
    a.window = window;
    a.q_heads = qh;
    a.head_size = hs;
    a.q = q.data() + start * qh * hs;
    a.ld_q = qh * hs;
    a.k = k.data() + start * hs;
    a.v = v.data() + start * hs;
    a.ld_kv = hs;
    a.k_ring = kr.data();
    a.v_ring = vr.data();
    a.ring_bf16 = ring_bf16;
    a.ld_ring = hs;
    a.out = out.data() + start * qh * hs;
    a.ld_out = qh * hs;
    a.scratch = scratch.data();
    SwaGroupAttention(a);
    start += len;
  }
  ASSERT_EQ(start, T);
  EXPECT_LE(RelErr(out, want), 1e-5);
  // Ring row p % window holds position p's key (as stored) for the last `window` positions.
  for (int p = T - window; p < T; ++p) {
    for (int i = 0; i < hs; ++i) {
      const int e = (p % window) * hs + i;
      const float got = ring_bf16 ? Bf16ToFloat(reinterpret_cast<const uint16_t*>(kr.data())[e])
                                  : kr[e];
      EXPECT_EQ(got, ring_bf16 ? Bf16ToFloat(FloatToBf16(k[p * hs + i])) : k[p * hs + i]);
    }
  }
}

TEST(SwaAttentionTest, RingEqualsFullHistoryWindow) { CheckRingEqualsFullHistoryWindow(false); }

TEST(SwaAttentionTest, Bf16RingEqualsFullHistoryWindowOfEarlierChunksRounded) {
  CheckRingEqualsFullHistoryWindow(true);
}

TEST(RopeTest, RotatesHalvesOfTheRotaryDims) {
  const int heads = 2, hs = 8, rd = 4, rows = 3;
  const int64_t pos0 = 1000;
  auto x = Random(rows * heads * hs, 40);
  auto y = x;
  ApplyRopeNeox(y.data(), heads * hs, rows, pos0, heads, hs, rd, 10000.0);
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      const float* a = &x[(r * heads + h) * hs];
      const float* b = &y[(r * heads + h) * hs];
      for (int i = 0; i < rd / 2; ++i) {
        const double th = double(pos0 + r) * std::pow(10000.0, -2.0 * i / rd);
        EXPECT_NEAR(b[i], a[i] * std::cos(th) - a[i + rd / 2] * std::sin(th), 1e-6);
        EXPECT_NEAR(b[i + rd / 2], a[i + rd / 2] * std::cos(th) + a[i] * std::sin(th), 1e-6);
      }
      for (int i = rd; i < hs; ++i) EXPECT_EQ(b[i], a[i]);  // beyond rotary dims: untouched
    }
  }
}

TEST(LinearTest, MatchesNaiveProductForOneAndManyRows) {
  const int in = 13, out = 7;
  auto w = Random(out * in, 50);  // [out, in]
  std::vector<float> wt(in * out);
  TransposeMatrix(w.data(), out, in, wt.data());
  for (int n : {1, 5}) {
    auto x = Random(n * in, 51);
    std::vector<float> y(n * out, 1.0f);
    Linear(x.data(), in, n, in, wt.data(), out, y.data(), out, /*beta=*/1.0f);
    std::vector<double> want(n * out);
    for (int r = 0; r < n; ++r) {
      for (int o = 0; o < out; ++o) {
        double acc = 1.0;
        for (int i = 0; i < in; ++i) acc += double(x[r * in + i]) * w[o * in + i];
        want[r * out + o] = acc;
      }
    }
    EXPECT_LE(RelErr(y, want), 1e-6) << "n=" << n;
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f)), 1.0f);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(-2.5f)), -2.5f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
}

}  // namespace
}  // namespace deltaserve::cpu
