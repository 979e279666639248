// GPU tests of the chunked GDN-2 prefill (kernels/cuda/gdn2_chunk_prefill.h): outputs and final
// states against a float64 token-serial recurrence on the host, for lengths around the chunk
// size up to 5000, packed batches in a permuted slot pool with gaps, nonzero initial states,
// grouped value heads, every column-split count, continuation across calls, and two gate
// regimes: trained-model ranges (decay down to exp(-5) per token) and extreme ones (decay down
// to exp(-30), channels that barely decay, erase/write gates near 0 and 1, erase up to 2).
// The token-serial GPU kernel is checked against the same reference. Single tf32 products
// (Gdn2PrefillPrecision::kTf32) are checked at bf16-level tolerance in both gate regimes. bf16
// inputs (q, k, b, v, w; g stays f32) are checked against the reference on the same bf16
// values, at the tolerance of the products (fp32-level with 3xTF32). bf16 products
// (Gdn2PrefillPrecision::kBf16) are checked at a bf16-level tolerance the same ways.
#include "kernels/cuda/gdn2_chunk_prefill.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"

namespace deltaserve::cuda {
namespace {

using ::deltaserve::testing::Bf16ToFloat;
using ::deltaserve::testing::DeviceBuffer;
using ::deltaserve::testing::FloatToBf16;
using ::deltaserve::testing::RelErr;

constexpr int kD = 128;

enum class Regime { kTrained, kExtreme };

// Which launcher computes the prefill.
enum class Path { kSerial, kChunk };

const char* PathName(Path p) { return p == Path::kSerial ? "serial" : "chunk"; }

struct Inputs {
  int64_t tokens = 0;
  std::vector<float> q, k, g, b, v, w;  // [tokens, H*dk] / [tokens, HV*dv]
};

Inputs MakeInputs(const Gdn2PrefillShape& sh, int64_t tokens, Regime regime, std::mt19937& rng) {
  Inputs in;
  in.tokens = tokens;
  const int kd = sh.key_dim(), vd = sh.value_dim();
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  in.q.resize(tokens * kd);
  in.k.resize(tokens * kd);
  in.g.resize(tokens * kd);
  in.b.resize(tokens * kd);
  in.v.resize(tokens * vd);
  in.w.resize(tokens * vd);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < sh.num_heads; ++h) {
      float nq = 0, nk = 0;
      float* q = &in.q[t * kd + h * kD];
      float* k = &in.k[t * kd + h * kD];
      for (int c = 0; c < kD; ++c) {
        q[c] = nd(rng);
        k[c] = nd(rng);
        nq += q[c] * q[c];
        nk += k[c] * k[c];
      }
      const float sq = 1.f / std::sqrt(nq + 1e-6f) / std::sqrt(static_cast<float>(kD));
      const float sk = 1.f / std::sqrt(nk + 1e-6f);
      for (int c = 0; c < kD; ++c) {
        q[c] *= sq;
        k[c] *= sk;
      }
    }
    for (int i = 0; i < kd; ++i) {
      const float u = ud(rng);
      if (regime == Regime::kTrained) {
        in.g[t * kd + i] = -5.f * u * u * u;  // mostly mild, down to exp(-5)
        in.b[t * kd + i] = ud(rng);
      } else {
        const int c = i % kD;
        in.g[t * kd + i] = c < kD / 2 ? -1e-4f * u : -30.f * u;
        const float r = ud(rng);
        in.b[t * kd + i] = r < 0.4f ? 1e-4f : r < 0.8f ? 1.f - 1e-4f : 2.f * ud(rng);
      }
    }
    for (int i = 0; i < vd; ++i) {
      in.v[t * vd + i] = nd(rng);
      const float r = ud(rng);
      in.w[t * vd + i] = regime == Regime::kTrained ? ud(rng)
                         : r < 0.5f                 ? 1e-4f
                                                    : 1.f - 1e-4f;
    }
  }
  return in;
}

// Rounds q, k, b, v, w to bf16 values (what a bf16-input launch sees).
void RoundInputsToBf16(Inputs& in) {
  for (std::vector<float>* x : {&in.q, &in.k, &in.b, &in.v, &in.w})
    for (float& e : *x) e = Bf16ToFloat(FloatToBf16(e));
}

// x uploaded as `type` (f32, or bf16 bits of values that are already bf16).
DeviceBuffer Upload(const std::vector<float>& x, DType type) {
  if (type == DType::kF32) return DeviceBuffer::From(x);
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = FloatToBf16(x[i]);
  return DeviceBuffer::From(h);
}

// Float64 token-serial recurrence over tokens [t0, t1) for value head hv; state [dk][dv].
void SerialRef(const Gdn2PrefillShape& sh, const Inputs& in, int64_t t0, int64_t t1, int hv,
               std::vector<double>& s, std::vector<double>& out /* [tokens, HV*dv] */) {
  const int kd = sh.key_dim(), vd = sh.value_dim();
  const int kh = hv / (sh.num_v_heads / sh.num_heads);
  std::vector<double> r(kD), u(kD), sq(kD);
  for (int64_t t = t0; t < t1; ++t) {
    const float* q = &in.q[t * kd + kh * kD];
    const float* k = &in.k[t * kd + kh * kD];
    const float* g = &in.g[t * kd + kh * kD];
    const float* b = &in.b[t * kd + kh * kD];
    const float* v = &in.v[t * vd + hv * kD];
    const float* w = &in.w[t * vd + hv * kD];
    std::fill(r.begin(), r.end(), 0.0);
    for (int c = 0; c < kD; ++c) {
      const double a = std::exp(static_cast<double>(g[c]));
      const double bk = static_cast<double>(b[c]) * k[c];
      for (int n = 0; n < kD; ++n) {
        s[c * kD + n] *= a;
        r[n] += s[c * kD + n] * bk;
      }
    }
    for (int n = 0; n < kD; ++n) u[n] = static_cast<double>(w[n]) * v[n] - r[n];
    std::fill(sq.begin(), sq.end(), 0.0);
    for (int c = 0; c < kD; ++c)
      for (int n = 0; n < kD; ++n) {
        s[c * kD + n] += k[c] * u[n];
        sq[n] += s[c * kD + n] * q[c];
      }
    for (int n = 0; n < kD; ++n) out[t * vd + hv * kD + n] = sq[n];
  }
}

// A slot pool of `num_slots` slots with a 64-byte header before the recurrent state and some
// padding after it, filled with random states.
struct Pool {
  int64_t num_slots = 0;
  int64_t stride = 0;
  int64_t offset = 64;
  std::vector<float> host;  // stride/4 floats per slot
};

Pool MakePool(const Gdn2PrefillShape& sh, int64_t num_slots, std::mt19937& rng) {
  Pool p;
  p.num_slots = num_slots;
  p.stride = p.offset + static_cast<int64_t>(sh.num_v_heads) * kD * kD * 4 + 128;
  p.host.resize(num_slots * p.stride / 4);
  std::normal_distribution<float> nd(0.f, 0.5f);
  for (float& x : p.host) x = nd(rng);
  return p;
}

std::vector<double> SlotState(const Gdn2PrefillShape& sh, const std::vector<float>& pool,
                              const Pool& p, int slot, int hv) {
  const float* base = &pool[(slot * p.stride + p.offset) / 4 + static_cast<int64_t>(hv) * kD * kD];
  return std::vector<double>(base, base + kD * kD);
}

struct RunResult {
  std::vector<float> o;
  std::vector<float> pool;
};

absl::Status RunPrefill(const Gdn2PrefillShape& sh, const Inputs& in,
                        const std::vector<int32_t>& lens, const std::vector<int32_t>& slots,
                        const Pool& pool, Path path, int splits, RunResult* res,
                        Gdn2PrefillPrecision precision = Gdn2PrefillPrecision::kFp32,
                        DType input_type = DType::kF32) {
  std::vector<int32_t> cu(lens.size() + 1, 0);
  for (size_t i = 0; i < lens.size(); ++i) cu[i + 1] = cu[i] + lens[i];
  const int64_t tokens = cu.back();
  DeviceBuffer d_cu = DeviceBuffer::From(cu), d_slots = DeviceBuffer::From(slots);
  DeviceBuffer d_pool = DeviceBuffer::From(pool.host);
  DeviceBuffer dq = Upload(in.q, input_type), dk = Upload(in.k, input_type),
               dg = DeviceBuffer::From(in.g), db = Upload(in.b, input_type),
               dv = Upload(in.v, input_type), dw = Upload(in.w, input_type);
  std::vector<float> poison(tokens * sh.value_dim(), NAN);
  DeviceBuffer d_o = DeviceBuffer::From(poison);
  const int64_t wsf =
      Gdn2ChunkWorkspaceFloats(sh, tokens, static_cast<int>(lens.size()), precision);
  DeviceBuffer d_ws(wsf * 4);
  Gdn2PrefillArgs a;
  a.num_seqs = static_cast<int>(lens.size());
  a.cu_seqlens = d_cu.get<int32_t>();
  a.max_seq_len = *std::max_element(lens.begin(), lens.end());
  a.total_tokens = tokens;
  a.slots = d_slots.get<int32_t>();
  a.pool = d_pool.get();
  a.num_slots = pool.num_slots;
  a.slot_stride_bytes = pool.stride;
  a.recurrent_offset = pool.offset;
  a.input_type = input_type;
  a.q = dq.get();
  a.k = dk.get();
  a.g = dg.get<float>();
  a.b = db.get();
  a.v = dv.get();
  a.w = dw.get();
  a.q_stride = a.k_stride = a.g_stride = a.b_stride = sh.key_dim();
  a.v_stride = a.w_stride = a.o_stride = sh.value_dim();
  a.o = d_o.get<float>();
  a.workspace = d_ws.get<float>();
  a.workspace_floats = wsf;
  a.splits = splits;
  a.precision = precision;
  absl::Status st = path == Path::kSerial ? LaunchGdn2SerialPrefill(sh, a, nullptr)
                                          : LaunchGdn2ChunkPrefill(sh, a, nullptr);
  if (!st.ok()) return st;
  if (cudaDeviceSynchronize() != cudaSuccess) return absl::InternalError("device sync failed");
  res->o = d_o.To<float>();
  res->pool = d_pool.To<float>();
  return absl::OkStatus();
}

const char* PrecisionName(Gdn2PrefillPrecision p) {
  return p == Gdn2PrefillPrecision::kFp32 ? "fp32" : p == Gdn2PrefillPrecision::kTf32 ? "tf32"
                                                                                     : "bf16";
}

// Runs one configuration and checks every output, every used slot's final state and that the
// unused slots are untouched.
void Check(const Gdn2PrefillShape& sh, const std::vector<int32_t>& lens, Regime regime,
           Path path, int splits, double tol, uint32_t seed,
           Gdn2PrefillPrecision precision = Gdn2PrefillPrecision::kFp32,
           DType input_type = DType::kF32) {
  std::mt19937 rng(seed);
  const int64_t tokens = std::accumulate(lens.begin(), lens.end(), int64_t{0});
  Inputs in = MakeInputs(sh, tokens, regime, rng);
  if (input_type == DType::kBF16) RoundInputsToBf16(in);
  const int64_t num_slots = static_cast<int64_t>(lens.size()) * 2 + 1;
  Pool pool = MakePool(sh, num_slots, rng);
  std::vector<int32_t> slots(lens.size());
  for (size_t i = 0; i < lens.size(); ++i)
    slots[i] = static_cast<int32_t>((num_slots - 1) - 2 * i);  // reversed, with gaps
  RunResult res;
  const absl::Status run = RunPrefill(sh, in, lens, slots, pool, path, splits, &res, precision,
                                      input_type);
  if (run.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << run;
  ASSERT_TRUE(run.ok()) << run;

  std::vector<double> ref_o(tokens * sh.value_dim(), 0.0);
  int64_t t0 = 0;
  double worst_s = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    for (int hv = 0; hv < sh.num_v_heads; ++hv) {
      std::vector<double> s = SlotState(sh, pool.host, pool, slots[i], hv);
      SerialRef(sh, in, t0, t0 + lens[i], hv, s, ref_o);
      const double es = RelErr(SlotState(sh, res.pool, pool, slots[i], hv), s);
      worst_s = std::max(worst_s, es);
      EXPECT_LT(es, tol) << "state of seq " << i << " head " << hv;
    }
    t0 += lens[i];
  }
  const double eo = RelErr(std::vector<double>(res.o.begin(), res.o.end()), ref_o);
  EXPECT_LT(eo, tol) << "outputs";
  // Per sequence too, so one short sequence cannot hide behind a long one.
  t0 = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    const int64_t a = t0 * sh.value_dim(), e = (t0 + lens[i]) * sh.value_dim();
    EXPECT_LT(RelErr(std::vector<double>(res.o.begin() + a, res.o.begin() + e),
                     std::vector<double>(ref_o.begin() + a, ref_o.begin() + e)),
              tol)
        << "outputs of seq " << i << " (length " << lens[i] << ")";
    t0 += lens[i];
  }
  for (int64_t slot = 0; slot < num_slots; ++slot) {
    if (std::find(slots.begin(), slots.end(), slot) != slots.end()) continue;
    const int64_t a = slot * pool.stride / 4, e = (slot + 1) * pool.stride / 4;
    ASSERT_TRUE(std::equal(res.pool.begin() + a, res.pool.begin() + e, pool.host.begin() + a))
        << "untouched slot " << slot << " changed";
  }
  std::printf("  %-9s %s %s in lens[0]=%d seqs=%zu regime=%s splits=%d: out %.2e state %.2e\n",
              PathName(path), PrecisionName(precision),
              DTypeName(input_type), lens[0], lens.size(),
              regime == Regime::kTrained ? "trained" : "extreme", splits, eo, worst_s);
}

constexpr double kTolF32 = 2e-4;
// Single tf32 products: each operand rounded to 2^-11 relative; the bound is that of a bf16
// input (2^-8), which is what this precision is for.
constexpr double kTolTf32 = 4e-3;
// bf16 products: each operand rounded to 2^-9 relative (the state and every sum stay fp32), the
// precision of the reference Triton kernels; a bf16-level bound.
constexpr double kTolBf16 = 1.5e-2;

Gdn2PrefillShape Shape(int h, int hv) {
  Gdn2PrefillShape sh;
  sh.num_heads = h;
  sh.num_v_heads = hv;
  return sh;
}

TEST(Gdn2ChunkPrefillTest, SingleSequenceLengths) {
  DS_SKIP_WITHOUT_GPU();
  for (int len : {1, 2, 17, 63, 64, 65, 128, 129, 300, 1000, 5000})
    Check(Shape(1, 1), {len}, Regime::kTrained, Path::kChunk, 0, kTolF32, 100 + len);
}

TEST(Gdn2ChunkPrefillTest, ExtremeGates) {
  DS_SKIP_WITHOUT_GPU();
  for (int len : {1, 63, 64, 200, 5000})
    Check(Shape(1, 1), {len}, Regime::kExtreme, Path::kChunk, 0, kTolF32, 200 + len);
}

TEST(Gdn2ChunkPrefillTest, PackedBatchEverySplit) {
  DS_SKIP_WITHOUT_GPU();
  const std::vector<int32_t> lens = {1, 64, 100, 17, 129, 700, 3, 65};
  for (int splits : {2, 4, 8}) {
    Check(Shape(2, 2), lens, Regime::kTrained, Path::kChunk, splits, kTolF32, 300 + splits);
    Check(Shape(2, 2), lens, Regime::kExtreme, Path::kChunk, splits, kTolF32, 310 + splits);
  }
}

TEST(Gdn2ChunkPrefillTest, GroupedValueHeads) {
  DS_SKIP_WITHOUT_GPU();
  Check(Shape(1, 3), {90, 200}, Regime::kTrained, Path::kChunk, 0, kTolF32, 400);
  Check(Shape(1, 3), {90, 200}, Regime::kExtreme, Path::kChunk, 0, kTolF32, 401);
}

TEST(Gdn2ChunkPrefillTest, Tf32ProductsLengthsAndGates) {
  DS_SKIP_WITHOUT_GPU();
  constexpr auto kTf32 = Gdn2PrefillPrecision::kTf32;
  for (int len : {1, 63, 65, 300, 5000}) {
    Check(Shape(1, 1), {len}, Regime::kTrained, Path::kChunk, 0, kTolTf32, 700 + len, kTf32);
    Check(Shape(1, 1), {len}, Regime::kExtreme, Path::kChunk, 0, kTolTf32, 710 + len, kTf32);
  }
}

TEST(Gdn2ChunkPrefillTest, Tf32ProductsPackedEverySplitAndGroupedHeads) {
  DS_SKIP_WITHOUT_GPU();
  constexpr auto kTf32 = Gdn2PrefillPrecision::kTf32;
  const std::vector<int32_t> lens = {1, 64, 100, 17, 129, 700, 3, 65};
  for (int splits : {2, 4, 8}) {
    Check(Shape(2, 2), lens, Regime::kTrained, Path::kChunk, splits, kTolTf32, 800 + splits,
          kTf32);
    Check(Shape(2, 2), lens, Regime::kExtreme, Path::kChunk, splits, kTolTf32, 810 + splits,
          kTf32);
  }
  Check(Shape(1, 3), {90, 200}, Regime::kExtreme, Path::kChunk, 0, kTolTf32, 820, kTf32);
}

// bf16 inputs: both precisions, lengths around the chunk size, packed with every split count,
// grouped heads, both gate regimes; the token-serial kernel too.
TEST(Gdn2ChunkPrefillTest, Bf16Inputs) {
  DS_SKIP_WITHOUT_GPU();
  constexpr auto kFp32 = Gdn2PrefillPrecision::kFp32, kTf32 = Gdn2PrefillPrecision::kTf32;
  constexpr DType kBf16 = DType::kBF16;
  for (int len : {1, 63, 65, 300, 5000}) {
    Check(Shape(1, 1), {len}, Regime::kTrained, Path::kChunk, 0, kTolF32, 1000 + len, kFp32,
          kBf16);
    Check(Shape(1, 1), {len}, Regime::kExtreme, Path::kChunk, 0, kTolF32, 1010 + len, kFp32,
          kBf16);
  }
  const std::vector<int32_t> lens = {1, 64, 100, 17, 129, 700, 3, 65};
  for (int splits : {2, 4, 8}) {
    Check(Shape(2, 2), lens, Regime::kExtreme, Path::kChunk, splits, kTolF32, 1020 + splits,
          kFp32, kBf16);
    Check(Shape(2, 2), lens, Regime::kTrained, Path::kChunk, splits, kTolTf32, 1030 + splits,
          kTf32, kBf16);
  }
  Check(Shape(1, 3), {90, 200}, Regime::kExtreme, Path::kChunk, 0, kTolF32, 1040, kFp32, kBf16);
  Check(Shape(2, 2), {1, 300, 77}, Regime::kExtreme, Path::kSerial, 0, kTolF32, 1050, kFp32,
        kBf16);
}

// bf16 products (one fused phase-2 pass): lengths around the chunk size, both gate regimes,
// bf16 inputs (what they are for) and f32 ones, packed with every split count, grouped heads.
TEST(Gdn2ChunkPrefillTest, Bf16ProductsLengthsAndGates) {
  DS_SKIP_WITHOUT_GPU();
  constexpr auto kBf16P = Gdn2PrefillPrecision::kBf16;
  for (int len : {1, 17, 63, 64, 65, 300, 5000}) {
    Check(Shape(1, 1), {len}, Regime::kTrained, Path::kChunk, 0, kTolBf16, 1100 + len, kBf16P,
          DType::kBF16);
    Check(Shape(1, 1), {len}, Regime::kExtreme, Path::kChunk, 0, kTolBf16, 1110 + len, kBf16P,
          DType::kBF16);
  }
  Check(Shape(1, 1), {1000}, Regime::kExtreme, Path::kChunk, 0, kTolBf16, 1120, kBf16P);
}

TEST(Gdn2ChunkPrefillTest, Bf16ProductsPackedEverySplitAndGroupedHeads) {
  DS_SKIP_WITHOUT_GPU();
  constexpr auto kBf16P = Gdn2PrefillPrecision::kBf16;
  const std::vector<int32_t> lens = {1, 64, 100, 17, 129, 700, 3, 65};
  for (int splits : {0, 2, 4, 8}) {
    Check(Shape(2, 2), lens, Regime::kTrained, Path::kChunk, splits, kTolBf16, 1200 + splits,
          kBf16P, DType::kBF16);
    Check(Shape(2, 2), lens, Regime::kExtreme, Path::kChunk, splits, kTolBf16, 1210 + splits,
          kBf16P, DType::kBF16);
  }
  Check(Shape(1, 3), {90, 200}, Regime::kExtreme, Path::kChunk, 0, kTolBf16, 1220, kBf16P,
        DType::kBF16);
}

// Few phase-2 blocks (the cases above) run phase 2 beside phase 1; this batch is too large for
// that (120 blocks), so the two phases run one after the other.
TEST(Gdn2ChunkPrefillTest, Bf16ProductsPhasesInTurn) {
  DS_SKIP_WITHOUT_GPU();
  std::vector<int32_t> lens;
  for (int i = 0; i < 20; ++i) lens.push_back(1 + (i * 37) % 200);
  Check(Shape(3, 3), lens, Regime::kExtreme, Path::kChunk, 0, kTolBf16, 1300,
        Gdn2PrefillPrecision::kBf16, DType::kBF16);
}

TEST(Gdn2ChunkPrefillTest, SerialKernelMatchesReference) {
  DS_SKIP_WITHOUT_GPU();
  Check(Shape(2, 2), {1, 300, 77}, Regime::kTrained, Path::kSerial, 0, kTolF32, 500);
  Check(Shape(2, 2), {1, 300, 77}, Regime::kExtreme, Path::kSerial, 0, kTolF32, 501);
}

// A prompt split into several calls (chunks not aligned to 64) continues exactly where the
// previous call stopped: same outputs and final state as one call.
TEST(Gdn2ChunkPrefillTest, ContinuationAcrossCalls) {
  DS_SKIP_WITHOUT_GPU();
  const Gdn2PrefillShape sh = Shape(2, 2);
  std::mt19937 rng(600);
  const std::vector<int32_t> pieces = {100, 37, 500, 1};
  const int64_t tokens = std::accumulate(pieces.begin(), pieces.end(), int64_t{0});
  const Path path = Path::kChunk;
  // bf16 products round differently where the chunk boundaries differ: a bf16-level bound.
  const std::pair<Gdn2PrefillPrecision, double> cases[] = {
      {Gdn2PrefillPrecision::kFp32, 5e-5}, {Gdn2PrefillPrecision::kBf16, kTolBf16}};
  for (const auto& [precision, tol] : cases) {
    for (Regime regime : {Regime::kTrained, Regime::kExtreme}) {
      Inputs all = MakeInputs(sh, tokens, regime, rng);
      Pool pool = MakePool(sh, 3, rng);
      RunResult whole;
      ASSERT_TRUE(RunPrefill(sh, all, {static_cast<int32_t>(tokens)}, {1}, pool, path, 0, &whole,
                             precision)
                      .ok());
      Pool cur = pool;
      std::vector<float> o;
      int64_t t0 = 0;
      for (int32_t len : pieces) {
        Inputs part;
        part.tokens = len;
        auto slice = [&](const std::vector<float>& x, int width) {
          return std::vector<float>(x.begin() + t0 * width, x.begin() + (t0 + len) * width);
        };
        part.q = slice(all.q, sh.key_dim());
        part.k = slice(all.k, sh.key_dim());
        part.g = slice(all.g, sh.key_dim());
        part.b = slice(all.b, sh.key_dim());
        part.v = slice(all.v, sh.value_dim());
        part.w = slice(all.w, sh.value_dim());
        RunResult r;
        ASSERT_TRUE(RunPrefill(sh, part, {len}, {1}, cur, path, 0, &r, precision).ok());
        cur.host = r.pool;
        o.insert(o.end(), r.o.begin(), r.o.end());
        t0 += len;
      }
      const std::vector<double> a(o.begin(), o.end()), b(whole.o.begin(), whole.o.end());
      EXPECT_LT(RelErr(a, b), tol) << PrecisionName(precision);
      const std::vector<double> sa(cur.host.begin(), cur.host.end()),
          sb(whole.pool.begin(), whole.pool.end());
      EXPECT_LT(RelErr(sa, sb), tol) << PrecisionName(precision);
    }
  }
}

TEST(Gdn2ChunkPrefillTest, RejectsBadArguments) {
  Gdn2PrefillShape sh = Shape(2, 2);
  Gdn2PrefillArgs a;
  a.num_seqs = 1;
  a.total_tokens = 10;
  a.max_seq_len = 10;
  sh.head_k_dim = 64;
  EXPECT_EQ(LaunchGdn2ChunkPrefill(sh, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  sh.head_k_dim = 128;
  sh.num_v_heads = 3;
  EXPECT_EQ(LaunchGdn2ChunkPrefill(sh, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  sh.num_v_heads = 2;
  a.state_type = DType::kBF16;
  EXPECT_EQ(LaunchGdn2SerialPrefill(sh, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.state_type = DType::kF32;
  a.input_type = static_cast<DType>(9);
  EXPECT_EQ(LaunchGdn2SerialPrefill(sh, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.input_type = DType::kF32;
  a.splits = 3;
  const absl::Status bad_splits = LaunchGdn2ChunkPrefill(sh, a, nullptr);
  EXPECT_EQ(bad_splits.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_splits.message().find("splits"), std::string::npos) << bad_splits;
  a.splits = 0;
  a.precision = static_cast<Gdn2PrefillPrecision>(7);
  EXPECT_EQ(LaunchGdn2ChunkPrefill(sh, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
  a.precision = Gdn2PrefillPrecision::kFp32;
  {
    // A workspace that is not 16-byte aligned (the launcher returns before any launch, so the
    // stand-in addresses are never read).
    Gdn2PrefillArgs m = a;
    float* fake = reinterpret_cast<float*>(uintptr_t{1} << 20);
    m.cu_seqlens = m.slots = reinterpret_cast<const int32_t*>(fake);
    m.pool = fake;
    m.q = m.k = m.b = m.v = m.w = fake;
    m.g = fake;
    m.o = fake;
    m.q_stride = m.k_stride = m.g_stride = m.b_stride = sh.key_dim();
    m.v_stride = m.w_stride = m.o_stride = sh.value_dim();
    m.num_slots = 1;
    m.slot_stride_bytes = 1 << 20;
    m.workspace = fake + 1;
    m.workspace_floats = int64_t{1} << 40;
    const absl::Status misaligned = LaunchGdn2ChunkPrefill(sh, m, nullptr);
    EXPECT_EQ(misaligned.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(misaligned.message().find("16-byte aligned"), std::string::npos) << misaligned;
  }
  // Missing tensors.
  EXPECT_EQ(LaunchGdn2ChunkPrefill(sh, a, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace deltaserve::cuda
