// Tests the decode-step kernels other than the GDN-2 recurrence against float64 CPU references
// written from MODEL_SPEC.md section 3: sliding-window attention decode (RoPE, ring write, window
// with wrap-around, grouped query heads) on a permuted, padded slot pool at batch 1 and a large
// batch, checking untouched bytes; and RMSNorm, SwiGLU (f32 and bf16 input), embedding gather,
// casts, positions.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/swa_decode.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::FloatToBf16;
using ::deltaserve::testing::LoadElem;
using ::deltaserve::testing::RelErr;
using ::deltaserve::testing::StoreElem;

using DecodeOpsTest = ::deltaserve::testing::GpuTest;

// SwiGLU of h (values [rows, ldh]) read as `type` (bf16: h rounded to bf16 first, so the
// reference sees what the kernel reads) against a double reference; out rows of stride ldo, their
// padding (0xffff) untouched.
void CheckSwiGlu(const std::vector<float>& h, int64_t ldh, int64_t rows, int64_t width,
                 int64_t ldo, DType type, const std::string& what) {
  std::vector<float> hr = h;
  std::vector<uint16_t> hb(h.size());
  for (size_t i = 0; i < h.size(); ++i) {
    hb[i] = FloatToBf16(h[i]);
    if (type == DType::kBF16) hr[i] = Bf16ToFloat(hb[i]);
  }
  DeviceBuffer dh = type == DType::kBF16 ? DeviceBuffer::From(hb) : DeviceBuffer::From(h);
  DeviceBuffer dout = DeviceBuffer::From(std::vector<uint16_t>(rows * ldo, 0xffff));
  ASSERT_TRUE(LaunchSwiGlu(dh.get(), type, ldh, rows, width, dout.get(), ldo, nullptr).ok());
  const std::vector<uint16_t> out = dout.To<uint16_t>();
  std::vector<double> got, ref;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < ldo; ++i) {
      if (i >= width) {
        ASSERT_EQ(out[r * ldo + i], 0xffff) << what << ": row " << r << " col " << i;
        continue;
      }
      const double a = hr[r * ldh + i], b = hr[r * ldh + width + i];
      ref.push_back(a / (1 + std::exp(-a)) * b);
      got.push_back(Bf16ToFloat(out[r * ldo + i]));
    }
  }
  EXPECT_LT(RelErr(got, ref), 4e-3) << what;
}


// overlap: launched as a programmatic dependent right after a kernel that writes qkv over a NaN
// poison; the attention must read qkv only after that kernel finished. ring_type: the rings'
// storage; a bf16 ring holds the new key and value rounded, the attention uses them in fp32.
void RunSwa(SwaDecodeShape s, int B, int splits, uint32_t seed, bool overlap = false,
            DType ring_type = DType::kF32) {
  s.ring_type = ring_type;
  const int nh = s.n_head, G = s.n_query_groups, hs = s.head_size, W = s.window;
  const int qpg = nh / G;
  const bool bf16 = ring_type == DType::kBF16;
  const int es = DTypeBytes(ring_type);
  const int64_t ring = int64_t{W} * G * hs;
  const int64_t pos_off = 0, k_off = 256, v_off = 256 + (ring * es + 255) / 256 * 256;
  const int64_t stride = v_off + (ring * es + 255) / 256 * 256 + 256;  // padded
  auto put = [&](uint8_t* at, float x) { StoreElem(at, 0, x, bf16); };
  auto rd = [&](const uint8_t* at) { return double{LoadElem(at, 0, bf16)}; };
  auto stored = [&](double x) {
    return bf16 ? double{Bf16ToFloat(FloatToBf16(static_cast<float>(x)))} : x;
  };
  const int num_slots = 2 * B + 3;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<uint8_t> pool(static_cast<size_t>(num_slots) * stride);
  for (auto& x : pool) x = static_cast<uint8_t>(rng());
  for (int sl = 0; sl < num_slots; ++sl) {
    uint8_t* base = pool.data() + static_cast<size_t>(sl) * stride;
    for (int64_t i = 0; i < ring; ++i) {
      const float a = nd(rng), b = nd(rng);
      put(base + k_off + es * i, a);
      put(base + v_off + es * i, b);
    }
    // Positions: short contexts, exactly the window, and wrapped rings.
    const int64_t pos = sl % 4 == 0 ? sl % 5 : sl % 4 == 1 ? W - 1 : W + 1 + (rng() % (2 * W));
    std::memcpy(base + pos_off, &pos, 8);
  }
  std::vector<int32_t> perm(num_slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> slots(perm.begin(), perm.begin() + B);
  const int64_t qkv_stride = s.qkv_width() + 8;
  std::vector<float> qkv(static_cast<size_t>(B) * qkv_stride);
  for (auto& x : qkv) x = nd(rng);
  const int64_t y_stride = int64_t{nh} * hs + 8;

  DeviceBuffer d_pool = DeviceBuffer::From(pool), d_slots = DeviceBuffer::From(slots),
               d_qkv = DeviceBuffer::From(qkv);
  DeviceBuffer d_y(static_cast<size_t>(B) * y_stride * 4);
  ASSERT_EQ(cudaMemset(d_y.get(), 0xff, d_y.bytes()), cudaSuccess);
  const int sp = SwaDecodeSplits(s, B, splits);
  DeviceBuffer d_scr(static_cast<size_t>(SwaDecodeScratchFloats(s, B, sp)) * 4);
  SwaDecodeArgs a;
  a.batch = B;
  a.slots = d_slots.get<int32_t>();
  a.pool = d_pool.get();
  a.num_slots = num_slots;
  a.slot_stride_bytes = stride;
  a.k_ring_offset = k_off;
  a.v_ring_offset = v_off;
  a.position_offset = pos_off;
  a.qkv = d_qkv.get<float>();
  a.qkv_stride = qkv_stride;
  a.y = d_y.get();
  a.y_stride = y_stride;
  a.y_type = DType::kF32;
  a.scratch = d_scr.get<float>();
  a.scratch_floats = SwaDecodeScratchFloats(s, B, sp);
  DeviceBuffer d_cnt(static_cast<size_t>(B) * nh * 4);
  ASSERT_EQ(cudaMemset(d_cnt.get(), 0, d_cnt.bytes()), cudaSuccess);
  a.counters = d_cnt.get<uint32_t>();
  a.num_counters = int64_t{B} * nh;
  a.splits = splits;
  cudaStream_t stream = nullptr;
  if (overlap) {
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaMemset(d_qkv.get(), 0xff, d_qkv.bytes()), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const absl::Status fs = LaunchFillRandom(d_qkv.get(), DType::kF32,
                                             static_cast<int64_t>(d_qkv.bytes() / 4), seed, 1.0f,
                                             0.0f, stream);
    ASSERT_TRUE(fs.ok()) << fs;
    a.overlap_launch = true;
  }
  absl::Status st = LaunchSwaDecode(s, a, stream);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // Every launch leaves the merge counters at zero: a second launch over the same inputs (y
  // poisoned again; the ring row it writes gets the same values) must write y again.
  for (uint32_t c : d_cnt.To<uint32_t>()) ASSERT_EQ(c, 0u) << "merge counter left nonzero";
  ASSERT_EQ(cudaMemset(d_y.get(), 0xff, d_y.bytes()), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  st = LaunchSwaDecode(s, a, stream);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (stream != nullptr) {
    ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
    qkv = d_qkv.To<float>();  // what the producer wrote is the reference's input
  }
  std::vector<uint8_t> after = d_pool.To<uint8_t>();
  std::vector<float> y = d_y.To<float>();

  auto rope = [&](std::vector<double> x, int64_t pos) {
    const int half = s.rope_dims / 2;
    std::vector<double> o = x;
    for (int i = 0; i < half; ++i) {
      const double th = pos * std::pow(s.rope_base, -2.0 * i / s.rope_dims);
      o[i] = x[i] * std::cos(th) - x[i + half] * std::sin(th);
      o[i + half] = x[i + half] * std::cos(th) + x[i] * std::sin(th);
    }
    return o;
  };
  std::vector<double> got_y, ref_y, got_ring, ref_ring;
  std::vector<bool> touched(num_slots, false);
  for (int bi = 0; bi < B; ++bi) {
    touched[slots[bi]] = true;
    const uint8_t* base = pool.data() + static_cast<size_t>(slots[bi]) * stride;
    const uint8_t* abase = after.data() + static_cast<size_t>(slots[bi]) * stride;
    int64_t pos;
    std::memcpy(&pos, base + pos_off, 8);
    const float* row = qkv.data() + bi * qkv_stride;
    for (int g = 0; g < G; ++g) {
      const float* grp = row + int64_t{g} * (qpg + 2) * hs;
      std::vector<double> k(grp + qpg * hs, grp + (qpg + 1) * hs), v(grp + (qpg + 1) * hs, grp + (qpg + 2) * hs);
      k = rope(k, pos);
      const int64_t r = pos % W;
      for (int t = 0; t < hs; ++t) {
        ref_ring.push_back(stored(k[t]));
        got_ring.push_back(rd(abase + k_off + es * ((r * G + g) * hs + t)));
        ref_ring.push_back(stored(v[t]));
        got_ring.push_back(rd(abase + v_off + es * ((r * G + g) * hs + t)));
      }
      for (int qh = 0; qh < qpg; ++qh) {
        const int h = g * qpg + qh;
        std::vector<double> q(grp + qh * hs, grp + (qh + 1) * hs);
        q = rope(q, pos);
        const int64_t lo = std::max<int64_t>(0, pos - W + 1);
        std::vector<double> sc;
        std::vector<std::vector<double>> vs;
        for (int64_t j = lo; j <= pos; ++j) {
          std::vector<double> kj(hs), vj(hs);
          for (int t = 0; t < hs; ++t) {
            if (j == pos) {
              kj[t] = k[t];
              vj[t] = v[t];
            } else {
              kj[t] = rd(base + k_off + es * (((j % W) * G + g) * hs + t));
              vj[t] = rd(base + v_off + es * (((j % W) * G + g) * hs + t));
            }
          }
          double d = 0;
          for (int t = 0; t < hs; ++t) d += q[t] * kj[t];
          sc.push_back(d / std::sqrt(double(hs)));
          vs.push_back(vj);
        }
        const double m = *std::max_element(sc.begin(), sc.end());
        double z = 0;
        for (double& x : sc) z += (x = std::exp(x - m));
        for (int t = 0; t < hs; ++t) {
          double o = 0;
          for (size_t j = 0; j < sc.size(); ++j) o += sc[j] / z * vs[j][t];
          ref_y.push_back(o);
          got_y.push_back(y[bi * y_stride + int64_t{h} * hs + t]);
        }
      }
    }
  }
  EXPECT_LT(RelErr(got_y, ref_y), 1e-4) << "attention output";
  // bf16: the kernel rounds RoPE formed in fp32, the reference in float64; an element may land
  // one bf16 step apart (a missing or truncating rounding would read ~1e-3).
  EXPECT_LT(RelErr(got_ring, ref_ring), bf16 ? 2e-4 : 1e-5) << "ring row written";
  // Every byte except the written ring rows is unchanged (positions included).
  int64_t changed = 0;
  for (int sl = 0; sl < num_slots; ++sl) {
    int64_t pos;
    std::memcpy(&pos, pool.data() + static_cast<size_t>(sl) * stride + pos_off, 8);
    const int64_t r = pos % W;
    for (int64_t i = 0; i < stride; ++i) {
      const size_t at = static_cast<size_t>(sl) * stride + i;
      const bool k_row = i >= k_off + es * r * G * hs && i < k_off + es * (r + 1) * G * hs;
      const bool v_row = i >= v_off + es * r * G * hs && i < v_off + es * (r + 1) * G * hs;
      if (touched[sl] && (k_row || v_row)) continue;
      if (pool[at] != after[at]) ++changed;
    }
  }
  EXPECT_EQ(changed, 0);
  for (int bi = 0; bi < B; ++bi) {
    for (int64_t j = int64_t{nh} * hs; j < y_stride; ++j)
      ASSERT_TRUE(std::isnan(y[bi * y_stride + j])) << "y padding written";
  }
}

TEST_F(DecodeOpsTest, SwaReferenceShapesBatch1AndLarge) {
  SwaDecodeShape s;  // 18 x 128, window 2048: the hybrid 1.3B layer
  s.window = 256;    // smaller ring keeps the float64 reference fast; the kernel is the same
  RunSwa(s, 1, 0, 1);
  RunSwa(s, 1, 5, 2);
  RunSwa(s, 48, 0, 3);
  // The most splits a launch takes (32, merged by the last block): 8 keys each on this ring
  // (short contexts leave splits empty), then 64 each on the full 2048-row ring.
  RunSwa(s, 2, 32, 8);
  s.window = 2048;
  RunSwa(s, 1, 32, 9);
}

TEST_F(DecodeOpsTest, SwaBf16RingsBatch1AndLarge) {
  SwaDecodeShape s;  // the hybrid 1.3B layer
  s.window = 256;
  RunSwa(s, 1, 0, 21, false, DType::kBF16);
  RunSwa(s, 48, 0, 22, false, DType::kBF16);
  RunSwa(s, 2, 32, 23, false, DType::kBF16);
  s.window = 2048;
  RunSwa(s, 1, 0, 24, /*overlap=*/true, DType::kBF16);  // with the L2 prefetch of ring lines
  SwaDecodeShape small;  // head sizes whose bf16 rows are shorter than a 128-byte line
  small.n_head = 4;
  small.n_query_groups = 2;
  small.window = 16;
  for (int hs : {32, 64}) {
    small.head_size = hs;
    small.rope_dims = hs / 2;
    RunSwa(small, 9, 0, 25 + hs, /*overlap=*/true, DType::kBF16);
  }
}

TEST_F(DecodeOpsTest, SwaOverlappedLaunchWaitsForQkvProducer) {
  SwaDecodeShape s;  // the hybrid 1.3B layer at its full window
  RunSwa(s, 1, 0, 11, /*overlap=*/true);
  s.window = 256;
  RunSwa(s, 48, 0, 12, /*overlap=*/true);
  SwaDecodeShape grouped;
  grouped.n_head = 8;
  grouped.n_query_groups = 2;
  grouped.head_size = 64;
  grouped.window = 16;
  grouped.rope_dims = 32;
  RunSwa(grouped, 37, 3, 13, /*overlap=*/true);
  RunSwa(grouped, 1, 0, 14, /*overlap=*/true);
}

TEST_F(DecodeOpsTest, SwaGroupedQueriesPartialRope) {
  SwaDecodeShape s;
  s.n_head = 8;
  s.n_query_groups = 2;
  s.head_size = 64;
  s.window = 16;
  s.rope_dims = 32;
  RunSwa(s, 1, 1, 4);
  RunSwa(s, 37, 0, 5);
  RunSwa(s, 37, 3, 6);
  s.head_size = 32;
  s.rope_dims = 32;
  s.window = 5;
  RunSwa(s, 64, 0, 7);
}

TEST_F(DecodeOpsTest, RowKernels) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int rows = 33, d = 2304, ld = 2312;
  std::vector<float> x(rows * ld), gamma(d);
  for (auto& v : x) v = nd(rng);
  for (auto& v : gamma) v = 1.0f + 0.1f * nd(rng);
  DeviceBuffer dx = DeviceBuffer::From(x), dg = DeviceBuffer::From(gamma);
  DeviceBuffer dout(static_cast<size_t>(rows) * d * 2);
  ASSERT_TRUE(LaunchRmsNormToBf16(dx.get<float>(), ld, rows, d, dg.get<float>(), 1e-5f,
                                  dout.get(), d, nullptr).ok());
  std::vector<uint16_t> out = dout.To<uint16_t>();
  std::vector<double> got, ref;
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double{x[r * ld + i]} * x[r * ld + i];
    const double inv = 1.0 / std::sqrt(ss / d + 1e-5);
    for (int i = 0; i < d; ++i) {
      ref.push_back(x[r * ld + i] * inv * gamma[i]);
      got.push_back(Bf16ToFloat(out[r * d + i]));
    }
  }
  EXPECT_LT(RelErr(got, ref), 4e-3) << "rmsnorm";

  for (const DType t : {DType::kF32, DType::kBF16})
    CheckSwiGlu(x, ld, rows, 300, 300, t, t == DType::kBF16 ? "swiglu bf16 in" : "swiglu");

  // Both kernels also take rows that the 16-byte paths do not: odd widths and strides, and
  // RMSNorm rows wider than the registers hold (d > 8192).
  for (auto [nd_, nld] : {std::pair{2301, 2305}, std::pair{9000, 9004}}) {
    std::vector<float> x2(static_cast<size_t>(3) * nld);
    for (auto& v : x2) v = nd(rng);
    std::vector<float> g2(nd_, 1.0f);
    DeviceBuffer dx2 = DeviceBuffer::From(x2), dg2 = DeviceBuffer::From(g2);
    DeviceBuffer do2(static_cast<size_t>(3) * nd_ * 2);
    ASSERT_TRUE(LaunchRmsNormToBf16(dx2.get<float>(), nld, 3, nd_, dg2.get<float>(), 1e-5f,
                                    do2.get(), nd_, nullptr).ok());
    std::vector<uint16_t> o2 = do2.To<uint16_t>();
    got.clear();
    ref.clear();
    for (int r = 0; r < 3; ++r) {
      double ss = 0;
      for (int i = 0; i < nd_; ++i) ss += double{x2[r * nld + i]} * x2[r * nld + i];
      const double inv = 1.0 / std::sqrt(ss / nd_ + 1e-5);
      for (int i = 0; i < nd_; ++i) {
        ref.push_back(x2[r * nld + i] * inv);
        got.push_back(Bf16ToFloat(o2[r * nd_ + i]));
      }
    }
    EXPECT_LT(RelErr(got, ref), 4e-3) << "rmsnorm d=" << nd_;
    for (const DType t : {DType::kF32, DType::kBF16})
      CheckSwiGlu(x2, nld, 3, nd_ / 2 - 1, nd_ / 2 - 1, t,
                  "swiglu width " + std::to_string(nd_ / 2 - 1));
  }

  const int V = 77;
  std::vector<uint16_t> table(V * d);
  for (auto& t : table) t = static_cast<uint16_t>(0x3c00 + rng() % 0x0400);  // ~[0.0078, 0.0156)
  std::vector<int32_t> toks(rows);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % V);
  DeviceBuffer dt = DeviceBuffer::From(table), dtok = DeviceBuffer::From(toks);
  DeviceBuffer de(static_cast<size_t>(rows) * d * 4);
  ASSERT_TRUE(LaunchEmbedding(dt.get(), V, d, dtok.get<int32_t>(), rows, de.get<float>(), nullptr).ok());
  std::vector<float> e = de.To<float>();
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < d; ++i) ASSERT_EQ(e[r * d + i], Bf16ToFloat(table[toks[r] * d + i]));

  // Cast to bf16 over more rows than a grid dimension other than x allows, strided, columns
  // not a multiple of the block: every element rounded to nearest even, padding untouched.
  {
    const int64_t crows = 70000, ccols = 300, cld = 304, cldo = 320;
    std::vector<float> cin(crows * cld);
    for (auto& v : cin) v = nd(rng);
    std::vector<uint16_t> cout_init(crows * cldo, 0xffff);
    DeviceBuffer dci = DeviceBuffer::From(cin), dco = DeviceBuffer::From(cout_init);
    ASSERT_TRUE(
        LaunchCastToBf16(dci.get<float>(), cld, crows, ccols, dco.get(), cldo, nullptr).ok());
    std::vector<uint16_t> co = dco.To<uint16_t>();
    for (int64_t r = 0; r < crows; ++r)
      for (int64_t i = 0; i < cldo; ++i)
        ASSERT_EQ(co[r * cldo + i], i < ccols ? FloatToBf16(cin[r * cld + i]) : 0xffff)
            << "row " << r << " col " << i;
  }

  // SwiGLU over more rows than a grid dimension other than x allows, both kernels (width a
  // multiple of 4 and not), strided: every row computed, padding untouched.
  for (const int64_t sw : {int64_t{8}, int64_t{7}}) {
    const int64_t srows = 70000, sld = 2 * sw + 4;
    std::vector<float> sin(srows * sld);
    for (auto& v : sin) v = nd(rng);
    for (const DType t : {DType::kF32, DType::kBF16})
      CheckSwiGlu(sin, sld, srows, sw, sw + 4, t,
                  "swiglu over 70000 rows, width " + std::to_string(sw));
  }

  // Positions: only the listed slots advance; a negative slot (padding row) is skipped.
  const int64_t stride = 512, off = 64;
  std::vector<int64_t> pool(8 * stride / 8, 5);
  DeviceBuffer dp = DeviceBuffer::From(pool);
  std::vector<int32_t> ps = {6, -1, 2};
  DeviceBuffer dps = DeviceBuffer::From(ps);
  ASSERT_TRUE(LaunchAdvancePositions(dp.get(), stride, off, dps.get<int32_t>(), 3, nullptr).ok());
  std::vector<int64_t> pa = dp.To<int64_t>();
  for (size_t i = 0; i < pa.size(); ++i) {
    const int64_t slot = static_cast<int64_t>(i) * 8 / stride;
    const bool is_pos = (static_cast<int64_t>(i) * 8) % stride == off;
    EXPECT_EQ(pa[i], (is_pos && (slot == 6 || slot == 2)) ? 6 : 5) << i;
  }
}

}  // namespace
}  // namespace deltaserve::cuda
