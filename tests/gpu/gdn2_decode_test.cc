// Tests the fused GDN-2 decode kernel against a float64 CPU reference written from MODEL_SPEC.md
// sections 1-2 (token-serial recurrence in its S_t^T q form), on random inputs, with a
// permuted, padded slot pool: touched slots must match the reference, untouched slots must keep
// every byte.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/gdn2_decode.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/late_producer.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::FloatToBf16;
using ::deltaserve::testing::LaunchLateCopy;
using ::deltaserve::testing::RelErr;

struct Case {
  Gdn2DecodeShape shape;
  int batch;
  DType state_type;
  DType y_type;
  int splits;  // 0 = auto
  Gdn2DecodeArgs::Mode mode = Gdn2DecodeArgs::Mode::kFused;
  // Launch on a stream right after a kernel that produces z_raw (over a NaN poison), as a
  // programmatic dependent of it (overlap_launch, plus state_ready when set). The producer lets
  // its dependents start at once and writes z ~50 us later.
  bool overlap = false;
  bool state_ready = true;
  // With overlap: between the producer and this launch, the same step on a copy of the pool
  // (its own output buffer, the same prep scratch), also overlapped: each launch must take only
  // its own records from the shared scratch.
  bool after_own_launch = false;
  // > 0: the gate up-projections run inside the launch (Gdn2DecodeArgs::gate_rank); f_raw /
  // z_raw then carry rank-r inputs, and the producer of an overlapped launch writes g0.
  int gate_rank = 0;
  // > 0: rows 1, 1 + skip_every, ... carry slot indices out of range (-1 or >= num_slots),
  // which the kernel must skip: no state, history or output of theirs is written.
  int skip_every = 0;
  // q_raw .. w_raw in memory as this type (bf16: the reference reads the same rounded values).
  DType raw_type = DType::kF32;
};

double SiluD(double x) { return x / (1.0 + std::exp(-x)); }
double SigmoidD(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double SoftplusD(double x) { return x > 30 ? x : std::log1p(std::exp(x)); }

// Slot layout used by this test: regions at 256-byte boundaries plus a 512-byte tail pad.
struct Layout {
  int64_t rec, cq, ck, cv, stride;
};

Layout MakeLayout(const Gdn2DecodeShape& s, DType st) {
  auto up = [](int64_t n) { return (n + 255) / 256 * 256; };
  Layout l;
  int64_t off = 256;  // a leading region the kernel must not touch
  l.rec = off;
  off = up(off + int64_t{s.num_v_heads} * s.head_k_dim * s.head_v_dim * DTypeBytes(st));
  l.cq = off;
  off = up(off + int64_t{s.conv_size - 1} * s.key_dim() * 4);
  l.ck = off;
  off = up(off + int64_t{s.conv_size - 1} * s.key_dim() * 4);
  l.cv = off;
  off = up(off + int64_t{s.conv_size - 1} * s.value_dim() * 4);
  l.stride = off + 512;
  return l;
}

void RunCase(const Case& c, uint32_t seed) {
  const Gdn2DecodeShape& s = c.shape;
  const int H = s.num_heads, HV = s.num_v_heads, dk = s.head_k_dim, dv = s.head_v_dim,
            W = s.conv_size, G = HV / H, B = c.batch;
  const int kd = s.key_dim(), vd = s.value_dim();
  const Layout L = MakeLayout(s, c.state_type);
  const int num_slots = 2 * B + 3;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);

  // Pool: random bytes-level content everywhere (states small, histories O(1)).
  std::vector<uint8_t> pool(static_cast<size_t>(num_slots) * L.stride);
  for (auto& x : pool) x = static_cast<uint8_t>(rng());
  for (int sl = 0; sl < num_slots; ++sl) {
    uint8_t* base = pool.data() + static_cast<size_t>(sl) * L.stride;
    const int64_t n = int64_t{HV} * dk * dv;
    for (int64_t i = 0; i < n; ++i) {
      const float v = 0.3f * nd(rng);
      if (c.state_type == DType::kF32) {
        std::memcpy(base + L.rec + 4 * i, &v, 4);
      } else {
        const uint16_t h = FloatToBf16(v);
        std::memcpy(base + L.rec + 2 * i, &h, 2);
      }
    }
    for (int64_t off : {L.cq, L.ck}) {
      for (int64_t i = 0; i < int64_t{W - 1} * kd; ++i) {
        const float v = nd(rng);
        std::memcpy(base + off + 4 * i, &v, 4);
      }
    }
    for (int64_t i = 0; i < int64_t{W - 1} * vd; ++i) {
      const float v = nd(rng);
      std::memcpy(base + L.cv + 4 * i, &v, 4);
    }
  }
  // Slots: a random permutation's prefix (any order, gaps).
  std::vector<int32_t> perm(num_slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> slots(perm.begin(), perm.begin() + B);
  auto skipped = [&](int bi) { return c.skip_every > 0 && bi % c.skip_every == 1; };
  for (int bi = 0; bi < B; ++bi) {
    if (skipped(bi)) slots[bi] = bi % 4 == 1 ? -1 : num_slots + bi;
  }

  // Inputs with padded row strides.
  const int64_t pad = 8;
  auto rand_rows = [&](int width, float scale) {
    std::vector<float> v(static_cast<size_t>(B) * (width + pad));
    for (auto& x : v) x = scale * nd(rng);
    return v;
  };
  std::vector<float> q_raw = rand_rows(kd, 1.0f), k_raw = rand_rows(kd, 1.0f),
                     b_raw = rand_rows(kd, 1.0f), f_raw = rand_rows(kd, 1.0f),
                     v_raw = rand_rows(vd, 1.0f), w_raw = rand_rows(vd, 1.0f),
                     z_raw = rand_rows(vd, 1.0f);
  const bool raw16 = c.raw_type == DType::kBF16;
  // A raw input in memory: f32, or bf16 with the reference's copy rounded to match.
  auto raw_buffer = [&](std::vector<float>& v) {
    if (!raw16) return DeviceBuffer::From(v);
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      h[i] = FloatToBf16(v[i]);
      v[i] = Bf16ToFloat(h[i]);
    }
    return DeviceBuffer::From(h);
  };
  // Gate fold: rank-r inputs f0, g0 and bf16 up-projections; f_raw / z_raw become the products
  // bf16(f0) . f_up^T and bf16(g0) . z_up^T (the reference's inputs).
  const int R = c.gate_rank;
  std::vector<float> f0, g0;
  std::vector<uint16_t> f_up, z_up;
  auto up_project = [&](const std::vector<float>& x, const std::vector<uint16_t>& wts, int n,
                        std::vector<float>& out) {
    for (int bi = 0; bi < B; ++bi) {
      for (int j = 0; j < n; ++j) {
        double acc = 0;
        for (int t = 0; t < R; ++t) {
          acc += double{Bf16ToFloat(FloatToBf16(x[bi * (R + pad) + t]))} *
                 Bf16ToFloat(wts[static_cast<size_t>(j) * R + t]);
        }
        out[bi * (n + pad) + j] = static_cast<float>(acc);
      }
    }
  };
  if (R > 0) {
    f0 = rand_rows(R, 1.0f);
    g0 = rand_rows(R, 1.0f);
    for (auto [wts, n] : {std::pair{&f_up, kd}, std::pair{&z_up, vd}}) {
      wts->resize(static_cast<size_t>(n) * R);
      for (auto& x : *wts) x = FloatToBf16(nd(rng) / std::sqrt(static_cast<float>(R)));
    }
    up_project(f0, f_up, kd, f_raw);
    up_project(g0, z_up, vd, z_raw);
  }
  std::vector<float> q_cw(static_cast<size_t>(kd) * W), k_cw(q_cw.size()),
      v_cw(static_cast<size_t>(vd) * W), a_log(H), dt_bias(kd), z_bias(vd), o_norm(dv);
  for (auto* v : {&q_cw, &k_cw, &v_cw}) for (auto& x : *v) x = 0.5f * ud(rng);
  for (auto& x : a_log) x = 0.5f * ud(rng);
  for (auto& x : dt_bias) x = 0.5f * ud(rng);
  for (auto& x : z_bias) x = 0.2f * ud(rng);
  for (auto& x : o_norm) x = 1.0f + 0.2f * ud(rng);

  DeviceBuffer d_pool = DeviceBuffer::From(pool);
  DeviceBuffer d_slots = DeviceBuffer::From(slots);
  DeviceBuffer d_q = raw_buffer(q_raw), d_k = raw_buffer(k_raw), d_b = raw_buffer(b_raw),
               d_f = DeviceBuffer::From(R > 0 ? f0 : f_raw), d_v = raw_buffer(v_raw),
               d_w = raw_buffer(w_raw), d_z = DeviceBuffer::From(R > 0 ? g0 : z_raw);
  DeviceBuffer d_fup = DeviceBuffer::From(R > 0 ? f_up : std::vector<uint16_t>(8)),
               d_zup = DeviceBuffer::From(R > 0 ? z_up : std::vector<uint16_t>(8));
  DeviceBuffer d_qcw = DeviceBuffer::From(q_cw), d_kcw = DeviceBuffer::From(k_cw),
               d_vcw = DeviceBuffer::From(v_cw), d_alog = DeviceBuffer::From(a_log),
               d_dtb = DeviceBuffer::From(dt_bias), d_zb = DeviceBuffer::From(z_bias),
               d_on = DeviceBuffer::From(o_norm);
  const int64_t y_stride = vd + 16;
  DeviceBuffer d_y(static_cast<size_t>(B) * y_stride * DTypeBytes(c.y_type));
  ASSERT_NE(d_y.get(), nullptr);
  ASSERT_EQ(cudaMemset(d_y.get(), 0xff, d_y.bytes()), cudaSuccess);  // poison (NaN)

  Gdn2DecodeArgs a;
  a.batch = B;
  a.slots = d_slots.get<int32_t>();
  a.pool = d_pool.get();
  a.num_slots = num_slots;
  a.slot_stride_bytes = L.stride;
  a.recurrent_offset = L.rec;
  a.conv_q_offset = L.cq;
  a.conv_k_offset = L.ck;
  a.conv_v_offset = L.cv;
  a.state_type = c.state_type;
  a.q_raw = d_q.get(); a.k_raw = d_k.get(); a.v_raw = d_v.get();
  a.b_raw = d_b.get(); a.w_raw = d_w.get(); a.raw_type = c.raw_type;
  a.f_raw = d_f.get<float>(); a.z_raw = d_z.get<float>();
  a.q_stride = a.k_stride = a.b_stride = a.f_stride = kd + pad;
  a.v_stride = a.w_stride = a.z_stride = vd + pad;
  if (R > 0) {
    a.gate_rank = R;
    a.f_stride = a.z_stride = R + pad;
    a.f_up = d_fup.get();
    a.z_up = d_zup.get();
  }
  a.q_conv_w = d_qcw.get<float>(); a.k_conv_w = d_kcw.get<float>(); a.v_conv_w = d_vcw.get<float>();
  a.a_log = d_alog.get<float>(); a.dt_bias = d_dtb.get<float>(); a.z_bias = d_zb.get<float>();
  a.o_norm = d_on.get<float>();
  a.y = d_y.get();
  a.y_stride = y_stride;
  a.y_type = c.y_type;
  a.splits = c.splits;
  a.mode = c.mode;
  // Prep scratch: records poisoned (NaN), ready words zero as the contract asks.
  const int64_t prep_row = Gdn2DecodePrepFloats(s, 1);
  const int64_t ready_words = (H + 3) / 4 * 4;
  std::vector<uint32_t> prep_init(static_cast<size_t>(prep_row) * B, 0xffffffffu);
  for (int bi = 0; bi < B; ++bi) {
    std::fill_n(prep_init.begin() + (bi + 1) * prep_row - ready_words, ready_words, 0u);
  }
  DeviceBuffer d_prep = DeviceBuffer::From(prep_init);
  a.prep = d_prep.get<float>();
  a.prep_floats = Gdn2DecodePrepFloats(s, B);
  cudaStream_t stream = nullptr;
  DeviceBuffer d_z_src = c.overlap ? DeviceBuffer::From(R > 0 ? g0 : z_raw) : DeviceBuffer();
  DeviceBuffer d_pool2 = c.after_own_launch ? DeviceBuffer::From(pool) : DeviceBuffer();
  DeviceBuffer d_y2(c.after_own_launch ? d_y.bytes() : 0);
  if (c.overlap) {
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaMemset(d_z.get(), 0xff, d_z.bytes()), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    // The decode kernel must read z only after the producer finished (a NaN would reach y).
    ASSERT_EQ(LaunchLateCopy(d_z_src.get<float>(), d_z.get<float>(),
                             static_cast<int64_t>(d_z.bytes() / 4), 50000, stream),
              cudaSuccess);
    a.overlap_launch = true;
    a.state_ready = c.state_ready;
    if (c.after_own_launch) {
      Gdn2DecodeArgs first = a;
      first.pool = d_pool2.get();
      first.y = d_y2.get();
      absl::Status fs = LaunchGdn2Decode(s, first, stream);
      ASSERT_TRUE(fs.ok()) << fs;
    }
  }
  absl::Status st = LaunchGdn2Decode(s, a, stream);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (stream != nullptr) {
    ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  }

  if (c.mode == Gdn2DecodeArgs::Mode::kStreamed) {
    // Every record was consumed as often as it was published: the ready words are zero again.
    const std::vector<uint32_t> prep_after = d_prep.To<uint32_t>();
    for (int bi = 0; bi < B; ++bi) {
      for (int64_t w = 0; w < ready_words; ++w) {
        ASSERT_EQ(prep_after[(bi + 1) * prep_row - ready_words + w], 0u) << "row " << bi;
      }
    }
  }
  std::vector<uint8_t> pool_after = d_pool.To<uint8_t>();
  std::vector<uint8_t> y_bytes = d_y.To<uint8_t>();

  // Reference.
  auto rd_state = [&](const uint8_t* base, int64_t i) -> double {
    if (c.state_type == DType::kF32) {
      float v;
      std::memcpy(&v, base + L.rec + 4 * i, 4);
      return v;
    }
    uint16_t h;
    std::memcpy(&h, base + L.rec + 2 * i, 2);
    return Bf16ToFloat(h);
  };
  auto rd_f32 = [](const uint8_t* p) { float v; std::memcpy(&v, p, 4); return double{v}; };

  std::vector<double> ref_state, got_state, ref_hist, got_hist, ref_y, got_y;
  for (int bi = 0; bi < B; ++bi) {
    if (skipped(bi)) continue;
    const uint8_t* base = pool.data() + static_cast<size_t>(slots[bi]) * L.stride;
    const uint8_t* abase = pool_after.data() + static_cast<size_t>(slots[bi]) * L.stride;
    auto conv = [&](int64_t hist_off, int width, const std::vector<float>& raw,
                    const std::vector<float>& wts, int ch) {
      double acc = double{wts[ch * W + W - 1]} * raw[bi * (width + pad) + ch];
      for (int j = 0; j < W - 1; ++j)
        acc += double{wts[ch * W + j]} * rd_f32(base + hist_off + 4 * (int64_t{j} * width + ch));
      return SiluD(acc);
    };
    // Histories: shifted by one row with the raw input appended.
    for (auto [off, width, raw] : {std::tuple{L.cq, kd, &q_raw}, std::tuple{L.ck, kd, &k_raw},
                                   std::tuple{L.cv, vd, &v_raw}}) {
      for (int j = 0; j < W - 1; ++j) {
        for (int ch = 0; ch < width; ++ch) {
          const double expect = j < W - 2 ? rd_f32(base + off + 4 * (int64_t{j + 1} * width + ch))
                                          : double{(*raw)[bi * (width + pad) + ch]};
          ref_hist.push_back(expect);
          got_hist.push_back(rd_f32(abase + off + 4 * (int64_t{j} * width + ch)));
        }
      }
    }
    for (int hv = 0; hv < HV; ++hv) {
      const int kh = hv / G;
      std::vector<double> q(dk), k(dk), alpha(dk), beta(dk), v(dv), w(dv);
      double nq = 0, nk = 0;
      for (int i = 0; i < dk; ++i) {
        const int ch = kh * dk + i;
        q[i] = conv(L.cq, kd, q_raw, q_cw, ch);
        k[i] = conv(L.ck, kd, k_raw, k_cw, ch);
        nq += q[i] * q[i];
        nk += k[i] * k[i];
        const double g = -std::exp(double{a_log[kh]}) *
                         SoftplusD(double{f_raw[bi * (kd + pad) + ch]} + dt_bias[ch]);
        alpha[i] = std::exp(g);
        beta[i] = SigmoidD(b_raw[bi * (kd + pad) + ch]) * (s.allow_neg_eigval ? 2.0 : 1.0);
      }
      for (int i = 0; i < dk; ++i) {
        q[i] = q[i] / std::sqrt(nq + 1e-6) / std::sqrt(double(dk));
        k[i] = k[i] / std::sqrt(nk + 1e-6);
      }
      for (int j = 0; j < dv; ++j) {
        const int ch = hv * dv + j;
        v[j] = conv(L.cv, vd, v_raw, v_cw, ch);
        w[j] = SigmoidD(w_raw[bi * (vd + pad) + ch]);
      }
      // S_bar, r, S_t, o = S_t^T q.
      std::vector<double> S(static_cast<size_t>(dk) * dv);
      for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j)
          S[i * dv + j] = alpha[i] * rd_state(base, (int64_t{hv} * dk + i) * dv + j);
      std::vector<double> r(dv, 0.0), o(dv, 0.0);
      for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j) r[j] += S[i * dv + j] * beta[i] * k[i];
      for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j) S[i * dv + j] += k[i] * (w[j] * v[j] - r[j]);
      for (int i = 0; i < dk; ++i)
        for (int j = 0; j < dv; ++j) o[j] += S[i * dv + j] * q[i];
      for (int i = 0; i < dk; ++i) {
        for (int j = 0; j < dv; ++j) {
          ref_state.push_back(S[i * dv + j]);
          got_state.push_back(rd_state(abase, (int64_t{hv} * dk + i) * dv + j));
        }
      }
      double ms = 0;
      for (int j = 0; j < dv; ++j) ms += o[j] * o[j];
      const double inv = 1.0 / std::sqrt(ms / dv + s.norm_eps);
      for (int j = 0; j < dv; ++j) {
        const int ch = hv * dv + j;
        const double zz = double{z_raw[bi * (vd + pad) + ch]} + z_bias[ch];
        const double act = s.gate_sigmoid ? SigmoidD(zz) : SiluD(zz);
        ref_y.push_back(o[j] * inv * o_norm[j] * act);
        const size_t yi = static_cast<size_t>(bi) * y_stride + ch;
        if (c.y_type == DType::kF32) {
          got_y.push_back(rd_f32(y_bytes.data() + 4 * yi));
        } else {
          uint16_t h;
          std::memcpy(&h, y_bytes.data() + 2 * yi, 2);
          got_y.push_back(Bf16ToFloat(h));
        }
      }
    }
  }
  const bool bf16_state = c.state_type == DType::kBF16;
  const double state_tol = bf16_state ? 6e-3 : 2e-5;
  const double y_tol = (bf16_state || c.y_type == DType::kBF16) ? 1.5e-2 : 5e-5;
  EXPECT_LT(RelErr(got_state, ref_state), state_tol) << "state";
  EXPECT_LT(RelErr(got_y, ref_y), y_tol) << "output y";
  EXPECT_EQ(got_hist, ref_hist) << "conv histories";

  // Untouched: every byte outside the kernel's regions of touched slots, and all other slots.
  std::vector<bool> touched(num_slots, false);
  for (int32_t sl : slots) {
    if (sl >= 0 && sl < num_slots) touched[sl] = true;
  }
  const int64_t state_end =
      L.rec + int64_t{HV} * dk * dv * DTypeBytes(c.state_type);
  int64_t changed_outside = 0;
  for (int sl = 0; sl < num_slots; ++sl) {
    for (int64_t i = 0; i < L.stride; ++i) {
      const size_t at = static_cast<size_t>(sl) * L.stride + i;
      const bool in_region = touched[sl] && ((i >= L.rec && i < state_end) ||
                                             (i >= L.cq && i < L.cv + int64_t{W - 1} * vd * 4));
      // Region padding between conv_q/conv_k/conv_v is inside [cq, cv_end) but never written;
      // it is checked for equality below only outside the regions for simplicity.
      if (!in_region && pool[at] != pool_after[at]) ++changed_outside;
    }
  }
  EXPECT_EQ(changed_outside, 0) << "bytes changed outside the touched slots' regions";
  // Output rows' padding must stay poisoned; every real output must be written (finite).
  for (int bi = 0; bi < B; ++bi) {
    for (int j = 0; j < y_stride; ++j) {
      const size_t yi = static_cast<size_t>(bi) * y_stride + j;
      double val;
      if (c.y_type == DType::kF32) {
        val = rd_f32(y_bytes.data() + 4 * yi);
      } else {
        uint16_t h;
        std::memcpy(&h, y_bytes.data() + 2 * yi, 2);
        val = Bf16ToFloat(h);
      }
      if (skipped(bi)) {
        ASSERT_TRUE(std::isnan(val)) << "y row " << bi << " of a skipped slot written";
      } else if (j < vd) {
        ASSERT_TRUE(std::isfinite(val)) << "y[" << bi << "][" << j << "] unwritten";
      } else {
        ASSERT_TRUE(std::isnan(val)) << "y padding overwritten";
      }
    }
  }
}

Gdn2DecodeShape Ref13B() { return Gdn2DecodeShape{}; }

// Two key heads of two value heads each, 64 x 64 state per head; optionally negative
// eigenvalues with the sigmoid output gate.
Gdn2DecodeShape Grouped(bool neg_eig_sigmoid_gate = false, int conv_size = 3) {
  Gdn2DecodeShape g;
  g.num_heads = 2;
  g.num_v_heads = 4;
  g.head_k_dim = 64;
  g.head_v_dim = 64;
  g.conv_size = conv_size;
  g.allow_neg_eigval = neg_eig_sigmoid_gate;
  g.gate_sigmoid = neg_eig_sigmoid_gate;
  return g;
}

using Gdn2DecodeTest = ::deltaserve::testing::GpuTest;

TEST_F(Gdn2DecodeTest, Batch1AllSplitsF32) {
  for (int splits : {0, 1, 2, 4, 8}) {
    SCOPED_TRACE(splits);
    RunCase({Ref13B(), 1, DType::kF32, DType::kF32, splits}, 11 + splits);
  }
}

TEST_F(Gdn2DecodeTest, Batch1AllSplitsBf16State) {
  for (int splits : {0, 1, 8}) {
    SCOPED_TRACE(splits);
    RunCase({Ref13B(), 1, DType::kBF16, DType::kF32, splits}, 21 + splits);
  }
}

TEST_F(Gdn2DecodeTest, LargeBatchF32) {
  RunCase({Ref13B(), 96, DType::kF32, DType::kBF16, 0}, 31);
  RunCase({Ref13B(), 40, DType::kF32, DType::kF32, 2}, 32);
}

TEST_F(Gdn2DecodeTest, LargeBatchBf16State) {
  RunCase({Ref13B(), 96, DType::kBF16, DType::kBF16, 0}, 41);
}

TEST_F(Gdn2DecodeTest, GroupedHeadsNegEigSigmoidGate) {
  Gdn2DecodeShape s;
  s.num_heads = 2;
  s.num_v_heads = 4;
  s.head_k_dim = 64;
  s.head_v_dim = 64;
  s.conv_size = 3;
  s.allow_neg_eigval = true;
  s.gate_sigmoid = true;
  for (int splits : {1, 2, 4}) {
    SCOPED_TRACE(splits);
    RunCase({s, 5, DType::kF32, DType::kF32, splits}, 51 + splits);
    RunCase({s, 33, DType::kBF16, DType::kF32, splits}, 61 + splits);
  }
}

TEST_F(Gdn2DecodeTest, TinyHeadsDk32) {
  Gdn2DecodeShape s;  // the tiny-hybrid preset's mixer
  s.num_heads = 2;
  s.num_v_heads = 4;
  s.head_k_dim = 32;
  s.head_v_dim = 32;
  for (int splits : {0, 1, 2}) {
    SCOPED_TRACE(splits);
    RunCase({s, 3, DType::kF32, DType::kF32, splits}, 81 + splits);
    RunCase({s, 17, DType::kBF16, DType::kBF16, splits}, 91 + splits);
  }
}

TEST_F(Gdn2DecodeTest, ConvSizeOneHasNoHistory) {
  Gdn2DecodeShape s;
  s.num_heads = 4;
  s.num_v_heads = 4;
  s.head_k_dim = 64;
  s.head_v_dim = 32;
  s.conv_size = 1;
  RunCase({s, 7, DType::kF32, DType::kF32, 2}, 71);
}

TEST_F(Gdn2DecodeTest, StreamedModeAllShapes) {
  const auto kS = Gdn2DecodeArgs::Mode::kStreamed;
  RunCase({Ref13B(), 1, DType::kF32, DType::kF32, 1, kS}, 301);
  RunCase({Ref13B(), 1, DType::kBF16, DType::kF32, 0, kS}, 302);
  // More blocks than resident ones, several waves.
  RunCase({Ref13B(), 96, DType::kF32, DType::kBF16, 0, kS}, 303);
  RunCase({Ref13B(), 80, DType::kBF16, DType::kF32, 1, kS}, 304);
  // 130 MiB of state (and the 96 MiB above): the tiles are fetched with the L2 evict_last
  // policy and stored with write-back stores; below 64 MiB (80 bf16 rows, single rows) the
  // stores are streaming ones.
  RunCase({Ref13B(), 130, DType::kF32, DType::kF32, 1, kS}, 310);
  const Gdn2DecodeShape g = Grouped(/*neg_eig_sigmoid_gate=*/true);
  RunCase({g, 9, DType::kF32, DType::kF32, 1, kS}, 305);
  RunCase({g, 40, DType::kBF16, DType::kBF16, 1, kS}, 306);
  Gdn2DecodeShape t;
  t.num_heads = 2;
  t.num_v_heads = 4;
  t.head_k_dim = 32;
  t.head_v_dim = 32;
  RunCase({t, 300, DType::kBF16, DType::kBF16, 1, kS}, 307);
  RunCase({t, 7, DType::kF32, DType::kF32, 1, kS}, 308);
  t.conv_size = 1;
  RunCase({t, 5, DType::kF32, DType::kF32, 1, kS}, 309);
}

// q~ .. w~ read as bf16 (a bf16 input projection), by both arrangements: batch 1, several waves,
// grouped heads (whose prep repeats the v loads per value head), and the fused cluster's
// history shift (splits 4).
TEST_F(Gdn2DecodeTest, Bf16RawInputs) {
  const auto kF = Gdn2DecodeArgs::Mode::kFused, kS = Gdn2DecodeArgs::Mode::kStreamed;
  const Gdn2DecodeShape g = Grouped(/*neg_eig_sigmoid_gate=*/true);
  std::vector<Case> cases = {{Ref13B(), 1, DType::kF32, DType::kBF16, 0, kF},
                             {Ref13B(), 96, DType::kF32, DType::kBF16, 1, kS},
                             {Ref13B(), 40, DType::kBF16, DType::kBF16, 1, kS},
                             {g, 9, DType::kF32, DType::kF32, 1, kS},
                             {g, 5, DType::kF32, DType::kF32, 4, kF}};
  cases.push_back(cases[1]);
  cases.back().overlap = true;  // the streamed kernels wait for the producer of z
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    cases[i].raw_type = DType::kBF16;
    RunCase(cases[i], 700 + static_cast<uint32_t>(i));
  }
}

// Rows whose slot index is out of range are skipped by both arrangements; under kStreamed the
// skipped tiles sit between others in a block's ring, and their ready words stay zero.
TEST_F(Gdn2DecodeTest, OutOfRangeSlotsAreSkipped) {
  for (auto mode : {Gdn2DecodeArgs::Mode::kFused, Gdn2DecodeArgs::Mode::kStreamed}) {
    SCOPED_TRACE(static_cast<int>(mode));
    const int splits = mode == Gdn2DecodeArgs::Mode::kFused ? 0 : 1;
    Case c{Ref13B(), 40, DType::kF32, DType::kF32, splits, mode};
    c.skip_every = 3;
    RunCase(c, 801);
    Case bf{Grouped(), 300, DType::kBF16, DType::kBF16, splits, mode};
    bf.skip_every = 5;
    RunCase(bf, 802);
  }
}

TEST_F(Gdn2DecodeTest, FusedOverlappedLaunchWaitsForProducer) {
  for (int splits : {0, 1, 4}) {
    SCOPED_TRACE(splits);
    Case c{Ref13B(), 1, DType::kF32, DType::kF32, splits};
    c.overlap = true;
    RunCase(c, 401 + splits);
  }
  Case big{Ref13B(), 64, DType::kBF16, DType::kBF16, 0};
  big.overlap = true;
  RunCase(big, 411);
  const Gdn2DecodeShape g = Grouped();
  Case grouped{g, 9, DType::kF32, DType::kF32, 2};
  grouped.overlap = true;
  RunCase(grouped, 412);
}

// kStreamed on more shapes: more items than resident blocks, dk != dv, the widest conv, tiles
// of several bulk-copy pieces.
TEST_F(Gdn2DecodeTest, StreamedModeMoreShapes) {
  const auto kS = Gdn2DecodeArgs::Mode::kStreamed;
  const uint32_t seed = 520;
  RunCase({Ref13B(), 96, DType::kF32, DType::kBF16, 1, kS}, seed);
  RunCase({Ref13B(), 1, DType::kBF16, DType::kF32, 0, kS}, seed + 1);
  Gdn2DecodeShape n;  // H == HV, neg. eigenvalues, sigmoid gate, W = 3
  n.num_heads = 3;
  n.num_v_heads = 3;
  n.head_k_dim = 64;
  n.head_v_dim = 64;
  n.conv_size = 3;
  n.allow_neg_eigval = true;
  n.gate_sigmoid = true;
  RunCase({n, 9, DType::kF32, DType::kF32, 1, kS}, seed + 2);
  RunCase({n, 400, DType::kBF16, DType::kBF16, 1, kS}, seed + 3);
  Gdn2DecodeShape w;  // dk != dv, W = 1 (no history)
  w.num_heads = 4;
  w.num_v_heads = 4;
  w.head_k_dim = 64;
  w.head_v_dim = 32;
  w.conv_size = 1;
  RunCase({w, 7, DType::kF32, DType::kF32, 1, kS}, seed + 4);
  Gdn2DecodeShape t;  // dk 32, dv 16, W = 8 (the largest history)
  t.num_heads = 2;
  t.num_v_heads = 2;
  t.head_k_dim = 32;
  t.head_v_dim = 16;
  t.conv_size = 8;
  RunCase({t, 300, DType::kBF16, DType::kF32, 1, kS}, seed + 5);
  RunCase({t, 5, DType::kF32, DType::kBF16, 1, kS}, seed + 6);
  Gdn2DecodeShape d;  // dk 128, dv 64 / dk 64, dv 128: several bulk-copy pieces per tile
  d.num_heads = 2;
  d.num_v_heads = 2;
  d.head_k_dim = 128;
  d.head_v_dim = 64;
  d.conv_size = 2;
  RunCase({d, 33, DType::kF32, DType::kF32, 1, kS}, seed + 7);
  d.head_k_dim = 64;
  d.head_v_dim = 128;
  RunCase({d, 17, DType::kBF16, DType::kF32, 1, kS}, seed + 8);
}

TEST_F(Gdn2DecodeTest, StreamedOverlappedLaunchWaitsForProducer) {
  const auto kS = Gdn2DecodeArgs::Mode::kStreamed;
  const uint32_t seed = 620;
  for (bool ready : {true, false}) {
    SCOPED_TRACE(ready);
    Case c{Ref13B(), 1, DType::kF32, DType::kF32, 1, kS};
    c.overlap = true;
    c.state_ready = ready;
    RunCase(c, seed + ready);
    Case big{Ref13B(), 70, DType::kBF16, DType::kBF16, 1, kS};
    big.overlap = true;
    big.state_ready = ready;
    RunCase(big, seed + 2 + ready);
  }
}

TEST_F(Gdn2DecodeTest, StreamedLaunchAfterItselfSharesScratch) {
  // Two overlapped streamed launches in a row on one prep scratch, as the benchmark chains them
  // (the second's prep kernel launches as the first one's last blocks leave).
  const auto kS = Gdn2DecodeArgs::Mode::kStreamed;
  for (bool ready : {true, false}) {
    SCOPED_TRACE(ready);
    Case one{Ref13B(), 1, DType::kF32, DType::kF32, 1, kS};
    Case many{Ref13B(), 70, DType::kF32, DType::kBF16, 1, kS};
    Case bf16{Ref13B(), 40, DType::kBF16, DType::kBF16, 1, kS};
    for (Case* c : {&one, &many, &bf16}) {
      c->overlap = c->after_own_launch = true;
      c->state_ready = ready;
    }
    RunCase(one, 640 + ready);
    RunCase(many, 642 + ready);
    RunCase(bf16, 644 + ready);
  }
}

TEST_F(Gdn2DecodeTest, StreamedGroupedHeadsOverlapped) {
  // Grouped heads under kStreamed: the overlapped v5 prep kernel waits for the producer.
  const Gdn2DecodeShape g = Grouped();
  Case grouped{g, 9, DType::kF32, DType::kF32, 1, Gdn2DecodeArgs::Mode::kStreamed};
  grouped.overlap = true;
  RunCase(grouped, 605);
}

TEST_F(Gdn2DecodeTest, FusedOverlappedWithoutStateReady) {
  Case c{Ref13B(), 1, DType::kF32, DType::kF32, 2};
  c.overlap = true;
  c.state_ready = false;
  RunCase(c, 701);
  const Gdn2DecodeShape g = Grouped(false, /*conv_size=*/4);
  Case grouped{g, 5, DType::kBF16, DType::kF32, 2};
  grouped.overlap = true;
  grouped.state_ready = false;
  RunCase(grouped, 702);
}

// Gate up-projections inside the fused launch: batch 1 and larger, fp32 and bf16 state, one
// block per head and clusters of splits, grouped heads, overlapped launches whose producer
// writes g0, and ranks whose rows are not a multiple of 8 chunks (no swizzle).
TEST_F(Gdn2DecodeTest, FusedFoldedGateProjections) {
  const int r = Ref13B().head_v_dim;
  for (int splits : {0, 2, 4}) {
    SCOPED_TRACE(splits);
    Case c{Ref13B(), 1, DType::kF32, DType::kF32, splits};
    c.gate_rank = r;
    RunCase(c, 901 + splits);
  }
  Case two{Ref13B(), 2, DType::kBF16, DType::kBF16, 0};
  two.gate_rank = r;
  RunCase(two, 906);
  Case ov{Ref13B(), 1, DType::kF32, DType::kF32, 0};
  ov.gate_rank = r;
  ov.overlap = true;
  RunCase(ov, 907);
  Case ov_wait{Ref13B(), 3, DType::kF32, DType::kF32, 2};
  ov_wait.gate_rank = r;
  ov_wait.overlap = true;
  ov_wait.state_ready = false;
  RunCase(ov_wait, 908);
  Gdn2DecodeShape g = Grouped();
  g.gate_sigmoid = true;
  for (int rank : {64, 24, 8}) {
    SCOPED_TRACE(rank);
    Case grouped{g, 5, DType::kF32, DType::kF32, 2};
    grouped.gate_rank = rank;
    grouped.overlap = rank == 24;
    RunCase(grouped, 910 + rank);
  }
}

TEST(Gdn2DecodeArgsTest, RejectsBadShapesAndStrides) {
  // Runs without a GPU: validation happens before any CUDA call.
  Gdn2DecodeShape s;
  Gdn2DecodeArgs a;
  a.batch = 2;
  int32_t fake_slots = 0;
  float fake = 0;
  alignas(16) static char fake_pool[16];
  a.slots = &fake_slots;
  a.pool = fake_pool;
  a.num_slots = 4;
  a.q_raw = a.k_raw = a.v_raw = a.b_raw = a.w_raw = a.f_raw = a.z_raw = &fake;
  a.q_conv_w = a.k_conv_w = a.v_conv_w = a.a_log = a.dt_bias = a.z_bias = a.o_norm = &fake;
  a.y = &fake;
  a.slot_stride_bytes = 1024;  // far too small for a 1 MiB state
  a.q_stride = a.k_stride = a.b_stride = a.f_stride = s.key_dim();
  a.v_stride = a.w_stride = a.z_stride = a.y_stride = s.value_dim();
  absl::Status st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("recurrent_offset"), std::string::npos) << st;

  a.slot_stride_bytes = 4 << 20;
  a.conv_v_offset = 3;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("conv_v_offset"), std::string::npos) << st;

  a.conv_v_offset = 0;
  a.z_stride = 100;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("z_stride"), std::string::npos) << st;

  a.z_stride = s.value_dim();
  Gdn2DecodeShape bad = s;
  bad.head_k_dim = 96;
  st = LaunchGdn2Decode(bad, a, nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("head_k_dim"), std::string::npos) << st;

  a.splits = 16;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("cluster"), std::string::npos) << st;

  a.splits = 2;
  a.mode = Gdn2DecodeArgs::Mode::kStreamed;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("splits = 1"), std::string::npos) << st;

  a.splits = 1;
  st = LaunchGdn2Decode(s, a, nullptr);  // no prep scratch
  EXPECT_NE(st.message().find("prep scratch"), std::string::npos) << st;

  a.splits = 0;
  a.mode = Gdn2DecodeArgs::Mode::kFused;
  a.state_ready = true;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("state_ready"), std::string::npos) << st;
  a.state_ready = false;
  a.raw_type = static_cast<DType>(7);
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("raw_type"), std::string::npos) << st;
  a.raw_type = DType::kF32;
  a.mode = static_cast<Gdn2DecodeArgs::Mode>(7);
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("unknown mode"), std::string::npos) << st;

  a.mode = Gdn2DecodeArgs::Mode::kStreamed;
  a.gate_rank = 128;
  alignas(16) static uint16_t fake_up[8];
  a.f_up = a.z_up = fake_up;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("fused mode only"), std::string::npos) << st;
  a.mode = Gdn2DecodeArgs::Mode::kFused;
  a.gate_rank = 12;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("gate_rank 12"), std::string::npos) << st;
  a.gate_rank = 136;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("gate_rank 136"), std::string::npos) << st;
  a.gate_rank = 128;
  a.z_up = nullptr;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("f_up and z_up"), std::string::npos) << st;
  a.z_up = fake_up + 1;
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("16-byte aligned"), std::string::npos) << st;
  a.z_up = fake_up;
  a.f_stride = 100;  // >= gate_rank would do; 100 < 128
  st = LaunchGdn2Decode(s, a, nullptr);
  EXPECT_NE(st.message().find("f_stride"), std::string::npos) << st;
}

}  // namespace
}  // namespace deltaserve::cuda
