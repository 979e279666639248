// GPU tests of the sliding-window attention prefill (kernels/cuda/swa_prefill.h) against a
// float64 host reference: packed sequences starting at slot positions 0, inside and past the
// window (the ring wraps), grouped query heads, partial RoPE, empty sequences, untouched slots
// and ring rows, every head size, on both attention paths (tensor cores and fp32 FMA), with fp32
// and bf16 rings.
#include "kernels/cuda/swa_prefill.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::LoadElem;
using ::deltaserve::testing::StoreElem;

struct Layout {
  int64_t k_off = 0, v_off = 0, pos_off = 0, stride = 0;
  bool bf16 = false;  // the rings' storage
};

Layout MakeLayout(const SwaDecodeShape& s, bool bf16) {
  Layout l;
  const int64_t ring = int64_t{s.window} * s.n_query_groups * s.head_size * (bf16 ? 2 : 4);
  l.pos_off = 16;
  l.k_off = 32;
  l.v_off = l.k_off + ring;
  l.stride = l.v_off + ring + 48;
  l.bf16 = bf16;
  return l;
}

// Element e of the ring at byte `off` of a slot (fp32 or bf16 per the layout).
float RingGet(const Layout& lay, const float* slot, int64_t off, int64_t e) {
  return LoadElem(reinterpret_cast<const char*>(slot) + off, e, lay.bf16);
}

void RingPut(const Layout& lay, float* slot, int64_t off, int64_t e, float x) {
  StoreElem(reinterpret_cast<char*>(slot) + off, e, x, lay.bf16);
}

void RopeHost(const SwaDecodeShape& s, const float* x, float* out, int64_t pos) {
  const int half = s.rope_dims / 2;
  for (int t = 0; t < s.head_size; ++t) {
    if (t >= s.rope_dims || half == 0) {
      out[t] = x[t];
      continue;
    }
    const int i = t < half ? t : t - half;
    const double th = static_cast<double>(pos) * std::pow(s.rope_base, -2.0 * i / s.rope_dims);
    const float c = static_cast<float>(std::cos(th)), sn = static_cast<float>(std::sin(th));
    out[t] = t < half ? x[i] * c - x[i + half] * sn : x[i + half] * c + x[i] * sn;
  }
}

struct Result {
  std::vector<float> y, pool;
};

// Runs the kernel on `pool` (host bytes as floats) and returns outputs and the new pool.
Result RunDevice(const SwaDecodeShape& s, const Layout& lay, const std::vector<float>& pool,
                 int64_t num_slots, const std::vector<int32_t>& lens,
                 const std::vector<int32_t>& slots, const std::vector<float>& qkv,
                 bool tensor_cores) {
  std::vector<int32_t> cu(lens.size() + 1, 0);
  for (size_t i = 0; i < lens.size(); ++i) cu[i + 1] = cu[i] + lens[i];
  const int64_t tokens = cu.back();
  const int64_t yw = int64_t{s.n_head} * s.head_size;
  DeviceBuffer d_pool = DeviceBuffer::From(pool), d_qkv = DeviceBuffer::From(qkv),
               d_cu = DeviceBuffer::From(cu), d_slots = DeviceBuffer::From(slots);
  DeviceBuffer d_y = DeviceBuffer::From(std::vector<float>(std::max<int64_t>(tokens, 1) * yw, NAN));
  const int64_t sf = SwaPrefillScratchFloats(s, tokens);
  DeviceBuffer d_scratch(std::max<int64_t>(sf, 1) * 4);
  SwaPrefillArgs a;
  a.num_seqs = static_cast<int>(lens.size());
  a.cu_seqlens = d_cu.get<int32_t>();
  a.total_tokens = tokens;
  a.slots = d_slots.get<int32_t>();
  a.pool = d_pool.get();
  a.num_slots = num_slots;
  a.slot_stride_bytes = lay.stride;
  a.k_ring_offset = lay.k_off;
  a.v_ring_offset = lay.v_off;
  a.position_offset = lay.pos_off;
  a.qkv = d_qkv.get<float>();
  a.qkv_stride = s.qkv_width();
  a.y = d_y.get<float>();
  a.y_stride = yw;
  a.scratch = d_scratch.get<float>();
  a.scratch_floats = sf;
  a.tensor_cores = tensor_cores;
  SwaDecodeShape shape = s;
  shape.ring_type = lay.bf16 ? DType::kBF16 : DType::kF32;
  EXPECT_TRUE(LaunchSwaPrefill(shape, a, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Result r;
  r.y = d_y.To<float>();
  r.y.resize(tokens * yw);
  r.pool = d_pool.To<float>();
  return r;
}

void SetPosition(std::vector<float>& pool, const Layout& lay, int slot, int64_t pos) {
  std::memcpy(reinterpret_cast<char*>(pool.data()) + slot * lay.stride + lay.pos_off, &pos, 8);
}

struct PathParam {
  bool tensor_cores = true;
  bool bf16_ring = false;
};

// Runs packed sequences of `lens` tokens starting at slot positions `starts` and checks every
// output, every ring row and the untouched bytes against the float64 reference. A bf16 ring's
// old rows are read rounded, the new tokens' keys and values used in fp32 and stored rounded.
void CheckPacked(const SwaDecodeShape& s, const std::vector<int32_t>& lens,
                 const std::vector<int64_t>& starts, PathParam path, uint32_t seed) {
  const bool tensor_cores = path.tensor_cores;
  const Layout lay = MakeLayout(s, path.bf16_ring);
  const int64_t num_slots = 2 * static_cast<int64_t>(lens.size()) + 1;
  std::vector<int32_t> slots(lens.size());
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> pool(num_slots * lay.stride / 4);
  for (auto& x : pool) x = nd(rng);
  const int64_t ring_elems = int64_t{s.window} * s.n_query_groups * s.head_size;
  for (int64_t sl = 0; sl < num_slots && lay.bf16; ++sl) {
    for (int64_t e = 0; e < ring_elems; ++e) {
      RingPut(lay, pool.data() + sl * lay.stride / 4, lay.k_off, e, nd(rng));
      RingPut(lay, pool.data() + sl * lay.stride / 4, lay.v_off, e, nd(rng));
    }
  }
  for (size_t i = 0; i < lens.size(); ++i) {
    slots[i] = static_cast<int32_t>(num_slots - 1 - 2 * i);
    SetPosition(pool, lay, slots[i], starts[i]);
  }
  const int64_t tokens = std::accumulate(lens.begin(), lens.end(), int64_t{0});
  const int64_t W = s.qkv_width(), hs = s.head_size, G = s.n_query_groups, qpg = s.n_head / G;
  std::vector<float> qkv(tokens * W);
  for (auto& x : qkv) x = nd(rng);
  const Result r = RunDevice(s, lay, pool, num_slots, lens, slots, qkv, tensor_cores);

  std::vector<float> ref_pool = pool;
  int64_t t0 = 0;
  double max_err = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    const int64_t P = starts[i];
    const float* base = pool.data() + slots[i] * lay.stride / 4;
    float* ref_base = ref_pool.data() + slots[i] * lay.stride / 4;
    // RoPE'd keys and the values of the new tokens per group.
    std::vector<float> krot(lens[i] * G * hs), vnew(lens[i] * G * hs);
    for (int64_t t = 0; t < lens[i]; ++t)
      for (int g = 0; g < G; ++g) {
        const int64_t at = (t * G + g) * hs;
        const float* grp = &qkv[(t0 + t) * W + g * (qpg + 2) * hs];
        RopeHost(s, grp + qpg * hs, &krot[at], P + t);
        std::copy(grp + (qpg + 1) * hs, grp + (qpg + 2) * hs, &vnew[at]);
      }
    for (int64_t t = 0; t < lens[i]; ++t) {
      const int64_t pos = P + t;
      for (int h = 0; h < s.n_head; ++h) {
        const int g = static_cast<int>(h / qpg);
        std::vector<float> q(hs);
        RopeHost(s, &qkv[(t0 + t) * W + g * (qpg + 2) * hs + (h % qpg) * hs], q.data(), pos);
        const int64_t lo = std::max<int64_t>(0, pos - s.window + 1);
        std::vector<double> sc;
        std::vector<std::vector<float>> vs;
        for (int64_t j = lo; j <= pos; ++j) {
          std::vector<float> kr(hs), vr(hs);
          for (int e = 0; e < hs; ++e) {
            if (j < P) {
              const int64_t at = ((j % s.window) * G + g) * hs + e;
              kr[e] = RingGet(lay, base, lay.k_off, at);
              vr[e] = RingGet(lay, base, lay.v_off, at);
            } else {
              kr[e] = krot[((j - P) * G + g) * hs + e];
              vr[e] = vnew[((j - P) * G + g) * hs + e];
            }
          }
          double d = 0;
          for (int e = 0; e < hs; ++e) d += static_cast<double>(q[e]) * kr[e];
          sc.push_back(d / std::sqrt(static_cast<double>(hs)));
          vs.push_back(std::move(vr));
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double den = 0;
        for (double& x : sc) den += (x = std::exp(x - mx));
        for (int e = 0; e < hs; ++e) {
          double o = 0;
          for (size_t j = 0; j < sc.size(); ++j) o += sc[j] * vs[j][e];
          o /= den;
          const float got = r.y[(t0 + t) * s.n_head * hs + h * hs + e];
          const double err = std::fabs(got - o);
          max_err = std::max(max_err, err);
          ASSERT_LT(err, 2e-5 * (1 + std::fabs(o))) << "seq " << i << " t " << t << " h " << h;
        }
      }
    }
    for (int64_t t = std::max<int64_t>(0, lens[i] - s.window); t < lens[i]; ++t) {
      const int64_t row = (P + t) % s.window;
      for (int g = 0; g < G; ++g)
        for (int e = 0; e < hs; ++e) {
          RingPut(lay, ref_base, lay.k_off, (row * G + g) * hs + e, krot[(t * G + g) * hs + e]);
          RingPut(lay, ref_base, lay.v_off, (row * G + g) * hs + e, vnew[(t * G + g) * hs + e]);
        }
    }
    t0 += lens[i];
  }
  // A bf16 ring element may be one bf16 step from the reference's (the kernel's fp32 RoPE
  // against the host's, rounded); every other byte as before.
  const int64_t ring_begin = lay.k_off, ring_end = lay.v_off + (lay.v_off - lay.k_off);
  for (int64_t sl = 0; sl < num_slots; ++sl) {
    const float* got = r.pool.data() + sl * lay.stride / 4;
    const float* want = ref_pool.data() + sl * lay.stride / 4;
    for (int64_t f = 0; f < lay.stride / 4; ++f) {
      if (lay.bf16 && 4 * f >= ring_begin && 4 * f < ring_end) continue;
      ASSERT_NEAR(got[f], want[f], 1e-5f * (1.f + std::fabs(want[f])))
          << "slot " << sl << " float " << f;
    }
    for (int64_t e = 0; e < 2 * ring_elems && lay.bf16; ++e) {
      const float a = RingGet(lay, got, lay.k_off, e), b = RingGet(lay, want, lay.k_off, e);
      ASSERT_LE(std::fabs(a - b), std::fabs(b) / 128 + 1e-6f) << "slot " << sl << " ring " << e;
    }
  }
  std::printf("  swa prefill (%s, %s rings, head_size %d, window %d) max abs error %.2e\n",
              tensor_cores ? "tensor cores" : "fma", lay.bf16 ? "bf16" : "f32", s.head_size,
              s.window, max_err);
}

class SwaPrefillPathTest : public ::testing::TestWithParam<PathParam> {};

TEST_P(SwaPrefillPathTest, PackedAgainstReference) {
  DS_SKIP_WITHOUT_GPU();
  SwaDecodeShape s;
  s.n_head = 4;
  s.n_query_groups = 2;
  s.head_size = 64;
  s.window = 50;
  s.rope_dims = 32;
  CheckPacked(s, {1, 30, 120, 0, 7, 60}, {0, 3, 70, 5, 49, 200}, GetParam(), 11);
}

// Every head size, windows longer than a key tile, query tiles that straddle the window start
// and the ring / new-token boundary.
TEST_P(SwaPrefillPathTest, HeadSizesAndLongWindows) {
  DS_SKIP_WITHOUT_GPU();
  for (int hs : {32, 64, 96, 128}) {
    SwaDecodeShape s;
    s.n_head = 3;
    s.n_query_groups = hs == 96 ? 3 : 1;
    s.head_size = hs;
    s.window = 300;
    s.rope_dims = hs / 2;
    CheckPacked(s, {700, 65, 1, 130}, {0, 1000, 299, 250}, GetParam(), 20 + hs);
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, SwaPrefillPathTest,
                         ::testing::Values(PathParam{true, false}, PathParam{false, false},
                                           PathParam{true, true}, PathParam{false, true}),
                         [](const ::testing::TestParamInfo<PathParam>& p) {
                           return std::string(p.param.tensor_cores ? "TensorCores" : "Fma") +
                                  (p.param.bf16_ring ? "Bf16Ring" : "");
                         });

TEST(SwaPrefillTest, RejectsBadArguments) {
  SwaDecodeShape s;
  s.head_size = 48;
  SwaPrefillArgs a;
  a.num_seqs = 1;
  a.total_tokens = 1;
  EXPECT_EQ(LaunchSwaPrefill(s, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  s.head_size = 128;
  EXPECT_EQ(LaunchSwaPrefill(s, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::cuda
