// Benchmark of GDN-2 prefill for one layer (H = HV = 16, dk = dv = 128): the chunked kernels
// (kernels/cuda/gdn2_chunk_prefill.h; phase 2 at every split count and auto, and each phase
// alone) beside the token-serial kernel, in the same run, for one sequence of T = 1024, 4096,
// 16384, 65536 tokens and packed batches of the same totals (16 equal sequences, and one batch
// of mixed lengths). Reports time per launch (median of event-timed launches), tokens/s,
// achieved TFLOP/s of the chunkwise algorithm (Gdn2ChunkPrefillFlops) and the relative
// difference between the two paths' outputs; then the same with single tf32 products
// (Gdn2PrefillPrecision::kTf32, the bf16-level mode), and with those products on bf16 copies of
// q, k, b, v, w (g stays f32; the inputs the Triton reference reads are bf16 too; its relative
// difference includes the inputs' rounding), and bf16 inputs with bf16 products
// (Gdn2PrefillPrecision::kBf16: bf16 workspace, one fused phase-2 pass). (The retired phase
// versions' numbers are in bench/results/gdn2_prefill_*_h200.json.)
// Inputs: random, q/k L2-normalised, gates in trained-model ranges (decay down to exp(-5)).
// Then the device time of a whole prefill of the pure gdn2_1.3B model for prompts of 512, 4096
// and 32768 tokens (see ModelPrefill).
//
// Usage: gdn2_prefill_bench [out.json] [--no-model] [--single=T]
//   --no-model    skip the whole-model prefill
//   --single=T    only one sequence of T tokens (e.g. under a profiler)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/cuda/bench_util.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gdn2_chunk_prefill.h"
#include "kernels/cuda/gdn2_prefill_ops.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/short_conv_prefill.h"

using namespace deltaserve::bench;
using deltaserve::cuda::Gdn2PrefillArgs;
using deltaserve::cuda::Gdn2PrefillShape;

namespace {

constexpr int kD = 128;
constexpr int64_t kMaxTokens = 65536;
constexpr int64_t kPattern = 4096;  // host-generated tokens, repeated to fill the buffers

struct Row {
  std::string name;
  int64_t tokens;
  int seqs;
  int max_len;
  double chunk_s;     // best split count
  int splits;         // the split count of chunk_s (0: the launcher's pick)
  double auto_s;      // split count picked by the launcher
  double phase1_s, phase2_s;  // the two phases apart (auto split count)
  double serial_s, flops, rel_diff;
  double tf32_s;  // kTf32, best split count (as chunk_s)
  int tf32_splits;
  double tf32_phase1_s, tf32_phase2_s, tf32_rel_diff;  // kTf32, auto split count
  double bf16_s;  // bf16 inputs, kTf32, best split count
  int bf16_splits;
  double bf16_phase1_s, bf16_rel_diff;
  double bp_s;  // bf16 inputs, kBf16 (bf16 products), best split count
  int bp_splits;
  double bp_phase1_s, bp_phase2_s, bp_rel_diff;
};

// A bf16 copy of the f32 device array x [kMaxTokens, width].
void* Bf16Copy(const float* x, int64_t width) {
  void* d = nullptr;
  BENCH_CUDA(cudaMalloc(&d, kMaxTokens * width * 2));
  const absl::Status st =
      deltaserve::cuda::LaunchCastToBf16(x, width, kMaxTokens, width, d, width, nullptr);
  if (!st.ok()) std::fprintf(stderr, "cast: %s\n", st.ToString().c_str());
  BENCH_CUDA(cudaDeviceSynchronize());
  return d;
}

float* Fill(const std::vector<float>& pattern, int64_t width) {
  float* d = nullptr;
  BENCH_CUDA(cudaMalloc(&d, kMaxTokens * width * sizeof(float)));
  for (int64_t t = 0; t < kMaxTokens; t += kPattern)
    BENCH_CUDA(cudaMemcpy(d + t * width, pattern.data(), pattern.size() * sizeof(float),
                          cudaMemcpyHostToDevice));
  return d;
}


// GPU time of a whole prefill of the pure gdn2_1.3B model (MODEL_SPEC.md sections 2-4: 18
// GDN-2 layers, d_model 2304, MLP 6208, vocab 32000) for one prompt of T tokens: per layer
// RMSNorm, one fused bf16 projection GEMM (q, k, v, b, w, F0, G0), F1/G1 GEMMs, short-conv
// prefill, gates, chunked recurrence, output norm and gate, output projection, RMSNorm, SwiGLU
// MLP; then the final norm and the LM head for the last token. Random weights (one layer's set
// reused by every layer, 146 MB, larger than L2), per-layer recurrent and conv states. This is
// the device work of time to first token, without host scheduling or tokenization.
struct ModelRow {
  int64_t tokens;
  double seconds;
};

std::vector<ModelRow> ModelPrefill(cudaStream_t stream) {
  using namespace deltaserve::cuda;
  constexpr int kLayers = 18, kModel = 2304, kKey = 2048, kMlp = 6208, kVocab = 32000;
  constexpr int kProj = 5 * kKey + 2 * 128;  // q k v b w | F0 G0
  constexpr int64_t kMaxT = 32768;
  std::vector<ModelRow> out;
  auto gemm_or = Gemm::Create();
  if (!gemm_or.ok()) {
    std::fprintf(stderr, "gemm: %s\n", gemm_or.status().ToString().c_str());
    return out;
  }
  Gemm& gemm = **gemm_or;
  auto alloc = [](int64_t bytes) {
    void* p = nullptr;
    BENCH_CUDA(cudaMalloc(&p, bytes));
    return p;
  };
  auto fill = [&](void* p, DType t, int64_t n, uint64_t seed, float scale, float offset) {
    auto st = LaunchFillRandom(p, t, n, seed, scale, offset, stream);
    if (!st.ok()) std::fprintf(stderr, "fill: %s\n", st.ToString().c_str());
  };
  // Weights (bf16 matrices, fp32 vectors).
  void* w_proj = alloc(int64_t{kProj} * kModel * 2);
  void* w_f1 = alloc(int64_t{kKey} * 128 * 2);
  void* w_g1 = alloc(int64_t{kKey} * 128 * 2);
  void* w_o = alloc(int64_t{kModel} * kKey * 2);
  void* w_12 = alloc(int64_t{2 * kMlp} * kModel * 2);
  void* w_3 = alloc(int64_t{kModel} * kMlp * 2);
  void* w_head = alloc(int64_t{kVocab} * kModel * 2);
  float* gamma = static_cast<float*>(alloc(kModel * 4));
  float* conv_w = static_cast<float*>(alloc(int64_t{kKey} * 4 * 4));
  float* a_log = static_cast<float*>(alloc(16 * 4));
  float* dt_bias = static_cast<float*>(alloc(kKey * 4));
  float* z_bias = static_cast<float*>(alloc(kKey * 4));
  float* o_norm = static_cast<float*>(alloc(128 * 4));
  fill(w_proj, DType::kBF16, int64_t{kProj} * kModel, 1, 0.02f, 0.f);
  fill(w_f1, DType::kBF16, int64_t{kKey} * 128, 2, 0.05f, 0.f);
  fill(w_g1, DType::kBF16, int64_t{kKey} * 128, 3, 0.05f, 0.f);
  fill(w_o, DType::kBF16, int64_t{kModel} * kKey, 4, 0.02f, 0.f);
  fill(w_12, DType::kBF16, int64_t{2 * kMlp} * kModel, 5, 0.02f, 0.f);
  fill(w_3, DType::kBF16, int64_t{kModel} * kMlp, 6, 0.02f, 0.f);
  fill(w_head, DType::kBF16, int64_t{kVocab} * kModel, 7, 0.02f, 0.f);
  fill(gamma, DType::kF32, kModel, 8, 0.1f, 1.f);
  fill(conv_w, DType::kF32, int64_t{kKey} * 4, 9, 0.3f, 0.f);
  fill(a_log, DType::kF32, 16, 10, 0.5f, 0.f);
  fill(dt_bias, DType::kF32, kKey, 11, 0.5f, -2.f);
  fill(z_bias, DType::kF32, kKey, 12, 0.1f, 0.f);
  fill(o_norm, DType::kF32, 128, 13, 0.1f, 1.f);
  // Activations for kMaxT tokens.
  float* x0 = static_cast<float*>(alloc(kMaxT * kModel * 4));
  float* x = static_cast<float*>(alloc(kMaxT * kModel * 4));
  void* xn = alloc(kMaxT * kModel * 2);
  float* proj = static_cast<float*>(alloc(kMaxT * kProj * 4));
  void* fg = alloc(kMaxT * 256 * 2);
  float* f = static_cast<float*>(alloc(kMaxT * kKey * 4));
  float* z = static_cast<float*>(alloc(kMaxT * kKey * 4));
  float* qc = static_cast<float*>(alloc(kMaxT * kKey * 4));
  float* kc = static_cast<float*>(alloc(kMaxT * kKey * 4));
  float* vc = static_cast<float*>(alloc(kMaxT * kKey * 4));
  float* o = static_cast<float*>(alloc(kMaxT * kKey * 4));
  void* y = alloc(kMaxT * kKey * 2);
  float* h = static_cast<float*>(alloc(kMaxT * 2 * kMlp * 4));
  void* hb = alloc(kMaxT * kMlp * 2);
  float* logits = static_cast<float*>(alloc(kVocab * 4));
  const int64_t ws_floats = Gdn2ChunkWorkspaceFloats(Gdn2PrefillShape{}, kMaxT, 1);
  float* ws = static_cast<float*>(alloc(ws_floats * 4));
  fill(x0, DType::kF32, kMaxT * kModel, 14, 1.f, 0.f);
  // Per-layer slot: recurrent state, then the q, k, v conv histories.
  const int64_t state_bytes = 16LL * 128 * 128 * 4, hist_bytes = 3LL * kKey * 4;
  const int64_t slot_bytes = state_bytes + 3 * hist_bytes;
  void* pool = alloc(kLayers * slot_bytes);
  std::vector<int32_t> ids(kLayers);
  std::iota(ids.begin(), ids.end(), 0);
  int32_t* d_ids = static_cast<int32_t*>(alloc(kLayers * 4));
  int32_t* d_cu = static_cast<int32_t*>(alloc(2 * 4));
  BENCH_CUDA(cudaMemcpy(d_ids, ids.data(), kLayers * 4, cudaMemcpyHostToDevice));

  Gdn2DecodeShape ds;
  Gdn2PrefillShape ps;
  bool ok = true;
  auto check = [&](const absl::Status& st) {
    if (!st.ok() && ok) {
      std::fprintf(stderr, "model prefill: %s\n", st.ToString().c_str());
      ok = false;
    }
  };
  for (int64_t T : {512, 4096, 32768}) {
    const int32_t cu[2] = {0, static_cast<int32_t>(T)};
    BENCH_CUDA(cudaMemcpy(d_cu, cu, 8, cudaMemcpyHostToDevice));
    auto forward = [&] {
      BENCH_CUDA(cudaMemsetAsync(pool, 0, kLayers * slot_bytes, stream));
      BENCH_CUDA(cudaMemcpyAsync(x, x0, T * kModel * 4, cudaMemcpyDeviceToDevice, stream));
      for (int l = 0; l < kLayers; ++l) {
        check(LaunchRmsNormToBf16(x, kModel, T, kModel, gamma, 1e-5f, xn, kModel, stream));
        check(gemm.Run(T, kProj, kModel, xn, kModel, w_proj, kModel, proj, kProj, DType::kF32, 0.f,
                       stream));
        check(LaunchCastToBf16(proj + 5 * kKey, kProj, T, 256, fg, 256, stream));
        check(gemm.Run(T, kKey, 128, fg, 256, w_f1, 128, f, kKey, DType::kF32, 0.f, stream));
        check(gemm.Run(T, kKey, 128, static_cast<char*>(fg) + 256, 256, w_g1, 128, z, kKey,
                       DType::kF32, 0.f, stream));
        float* outs[3] = {qc, kc, vc};
        for (int i = 0; i < 3; ++i) {
          ShortConvPrefillArgs ca;
          ca.num_seqs = 1;
          ca.cu_seqlens = d_cu;
          ca.max_seq_len = static_cast<int>(T);
          ca.slots = d_ids + l;
          ca.pool = pool;
          ca.num_slots = kLayers;
          ca.slot_stride_bytes = slot_bytes;
          ca.history_offset = state_bytes + i * hist_bytes;
          ca.channels = kKey;
          ca.conv_size = 4;
          ca.x = proj + i * kKey;
          ca.x_stride = kProj;
          ca.weight = conv_w;
          ca.y = outs[i];
          ca.y_stride = kKey;
          check(LaunchShortConvPrefill(ca, stream));
        }
        Gdn2PrefillGatesArgs ga;
        ga.rows = T;
        ga.q = qc;
        ga.k = kc;
        ga.f = f;
        ga.b = proj + 3 * kKey;
        ga.w = proj + 4 * kKey;
        ga.q_stride = ga.k_stride = ga.f_stride = kKey;
        ga.b_stride = ga.w_stride = kProj;
        ga.a_log = a_log;
        ga.dt_bias = dt_bias;
        check(LaunchGdn2PrefillGates(ds, ga, stream));
        Gdn2PrefillArgs pa;
        pa.num_seqs = 1;
        pa.cu_seqlens = d_cu;
        pa.max_seq_len = static_cast<int>(T);
        pa.total_tokens = T;
        pa.slots = d_ids + l;
        pa.pool = pool;
        pa.num_slots = kLayers;
        pa.slot_stride_bytes = slot_bytes;
        pa.q = qc;
        pa.k = kc;
        pa.g = f;
        pa.b = proj + 3 * kKey;
        pa.v = vc;
        pa.w = proj + 4 * kKey;
        pa.q_stride = pa.k_stride = pa.g_stride = pa.v_stride = kKey;
        pa.b_stride = pa.w_stride = kProj;
        pa.o = o;
        pa.o_stride = kKey;
        pa.workspace = ws;
        pa.workspace_floats = ws_floats;
        check(LaunchGdn2ChunkPrefill(ps, pa, stream));
        Gdn2PrefillOutputArgs oa;
        oa.rows = T;
        oa.o = o;
        oa.z = z;
        oa.o_stride = oa.z_stride = oa.y_stride = kKey;
        oa.z_bias = z_bias;
        oa.o_norm = o_norm;
        oa.y = y;
        check(LaunchGdn2PrefillOutput(ds, oa, stream));
        check(gemm.Run(T, kModel, kKey, y, kKey, w_o, kKey, x, kModel, DType::kF32, 1.f, stream));
        check(LaunchRmsNormToBf16(x, kModel, T, kModel, gamma, 1e-5f, xn, kModel, stream));
        check(gemm.Run(T, 2 * kMlp, kModel, xn, kModel, w_12, kModel, h, 2 * kMlp, DType::kBF16,
                       0.f, stream));
        check(LaunchSwiGlu(h, DType::kBF16, 2 * kMlp, T, kMlp, hb, kMlp, stream));
        check(gemm.Run(T, kModel, kMlp, hb, kMlp, w_3, kMlp, x, kModel, DType::kF32, 1.f, stream));
      }
      check(LaunchRmsNormToBf16(x + (T - 1) * kModel, kModel, 1, kModel, gamma, 1e-5f, xn, kModel,
                                stream));
      check(gemm.Run(1, kVocab, kModel, xn, kModel, w_head, kModel, logits, kVocab, DType::kF32,
                     0.f, stream));
    };
    const double sec = TimeSingle(stream, forward, T >= 32768 ? 3 : 7);
    if (!ok) break;
    out.push_back({T, sec});
    std::printf("gdn2_1.3B prefill T=%6lld: %9.3f ms (%.2f M tok/s)\n", static_cast<long long>(T),
                sec * 1e3, T / sec / 1e6);
    std::fflush(stdout);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path = "gdn2_prefill_bench.json";
  bool model = true;
  int64_t only_single = 0;  // > 0: only the one-sequence config of this many tokens
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-model") {
      model = false;
    } else if (arg.rfind("--single=", 0) == 0) {
      only_single = std::stoll(arg.substr(9));
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return 2;
    } else {
      out_path = arg;
    }
  }
  const DeviceInfo dev = GetDeviceInfo();
  std::printf("device: %s, %d SMs, L2 %.0f MB\n", dev.name.c_str(), dev.sms, dev.l2_bytes / 1e6);

  Gdn2PrefillShape shape;
  const int kd = shape.key_dim(), vd = shape.value_dim();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  std::vector<float> q(kPattern * kd), k(kPattern * kd), g(kPattern * kd), b(kPattern * kd),
      v(kPattern * vd), w(kPattern * vd);
  for (int64_t r = 0; r < kPattern * shape.num_heads; ++r) {
    float nq = 0, nk = 0;
    for (int c = 0; c < kD; ++c) {
      q[r * kD + c] = nd(rng);
      k[r * kD + c] = nd(rng);
      nq += q[r * kD + c] * q[r * kD + c];
      nk += k[r * kD + c] * k[r * kD + c];
    }
    for (int c = 0; c < kD; ++c) {
      q[r * kD + c] /= std::sqrt(nq) * std::sqrt(static_cast<float>(kD));
      k[r * kD + c] /= std::sqrt(nk);
    }
  }
  for (auto& x : g) {
    const float u = ud(rng);
    x = -5.f * u * u * u;
  }
  for (auto& x : b) x = ud(rng);
  for (auto& x : v) x = nd(rng);
  for (auto& x : w) x = ud(rng);
  float *dq = Fill(q, kd), *dk = Fill(k, kd), *dg = Fill(g, kd), *db = Fill(b, kd),
        *dv = Fill(v, vd), *dw = Fill(w, vd);
  void *bq = Bf16Copy(dq, kd), *bk = Bf16Copy(dk, kd), *bb = Bf16Copy(db, kd),
       *bv = Bf16Copy(dv, vd), *bw = Bf16Copy(dw, vd);
  float *o_chunk = nullptr, *o_serial = nullptr, *ws = nullptr;
  BENCH_CUDA(cudaMalloc(&o_chunk, kMaxTokens * vd * sizeof(float)));
  BENCH_CUDA(cudaMalloc(&o_serial, kMaxTokens * vd * sizeof(float)));
  const int max_seqs = 64;
  const int64_t ws_floats = deltaserve::cuda::Gdn2ChunkWorkspaceFloats(shape, kMaxTokens, max_seqs);
  BENCH_CUDA(cudaMalloc(&ws, ws_floats * sizeof(float)));
  const int64_t slot_bytes = static_cast<int64_t>(shape.num_v_heads) * kD * kD * 4;
  void* pool = nullptr;
  BENCH_CUDA(cudaMalloc(&pool, max_seqs * slot_bytes));
  int32_t *d_cu = nullptr, *d_slots = nullptr;
  BENCH_CUDA(cudaMalloc(&d_cu, (max_seqs + 1) * sizeof(int32_t)));
  BENCH_CUDA(cudaMalloc(&d_slots, max_seqs * sizeof(int32_t)));
  std::vector<int32_t> slots(max_seqs);
  std::iota(slots.begin(), slots.end(), 0);
  BENCH_CUDA(cudaMemcpy(d_slots, slots.data(), max_seqs * sizeof(int32_t), cudaMemcpyHostToDevice));
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreate(&stream));

  struct Config {
    std::string name;
    std::vector<int32_t> lens;
  };
  std::vector<Config> configs;
  for (int64_t t : {1024, 4096, 16384, 65536})
    configs.push_back({"single", {static_cast<int32_t>(t)}});
  for (int64_t t : {1024, 4096, 16384, 65536})
    configs.push_back({"packed16", std::vector<int32_t>(16, static_cast<int32_t>(t / 16))});
  {
    std::vector<int32_t> mixed;
    std::mt19937 lr(3);
    int64_t sum = 0;
    while (sum < 16384 && mixed.size() < 48) {
      int32_t l = 1 + static_cast<int32_t>(lr() % 1500);
      l = static_cast<int32_t>(std::min<int64_t>(l, 16384 - sum));
      mixed.push_back(l);
      sum += l;
    }
    configs.push_back({"mixed", mixed});
  }
  if (only_single > 0) configs = {{"single", {static_cast<int32_t>(only_single)}}};

  std::vector<Row> rows;
  for (const Config& cfg : configs) {
    std::vector<int32_t> cu(cfg.lens.size() + 1, 0);
    for (size_t i = 0; i < cfg.lens.size(); ++i) cu[i + 1] = cu[i] + cfg.lens[i];
    BENCH_CUDA(cudaMemcpy(d_cu, cu.data(), cu.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    Gdn2PrefillArgs a;
    a.num_seqs = static_cast<int>(cfg.lens.size());
    a.cu_seqlens = d_cu;
    a.max_seq_len = *std::max_element(cfg.lens.begin(), cfg.lens.end());
    a.total_tokens = cu.back();
    a.slots = d_slots;
    a.pool = pool;
    a.num_slots = max_seqs;
    a.slot_stride_bytes = slot_bytes;
    a.recurrent_offset = 0;
    a.q = dq;
    a.k = dk;
    a.g = dg;
    a.b = db;
    a.v = dv;
    a.w = dw;
    a.q_stride = a.k_stride = a.g_stride = a.b_stride = kd;
    a.v_stride = a.w_stride = a.o_stride = vd;
    a.workspace = ws;
    a.workspace_floats = ws_floats;

    // Each path from the same initial state (zero), then the outputs compared.
    Gdn2PrefillArgs ac = a, as = a, at = a;
    ac.o = at.o = o_chunk;
    as.o = o_serial;
    at.precision = deltaserve::cuda::Gdn2PrefillPrecision::kTf32;  // bf16-level products
    Gdn2PrefillArgs ab = at;  // and bf16 inputs
    ab.input_type = deltaserve::cuda::DType::kBF16;
    ab.q = bq;
    ab.k = bk;
    ab.b = bb;
    ab.v = bv;
    ab.w = bw;
    Gdn2PrefillArgs ap = ab;  // and bf16 products
    ap.precision = deltaserve::cuda::Gdn2PrefillPrecision::kBf16;
    auto run_from_zero = [&](auto launcher, const Gdn2PrefillArgs& args) {
      BENCH_CUDA(cudaMemset(pool, 0, max_seqs * slot_bytes));
      const absl::Status launched = launcher(shape, args, stream);
      if (!launched.ok()) std::fprintf(stderr, "%s\n", launched.ToString().c_str());
      BENCH_CUDA(cudaStreamSynchronize(stream));
      return launched.ok();
    };
    if (!run_from_zero(deltaserve::cuda::LaunchGdn2SerialPrefill, as)) return 1;
    std::vector<float> hc(a.total_tokens * vd), hs(a.total_tokens * vd);
    BENCH_CUDA(cudaMemcpy(hs.data(), o_serial, hs.size() * 4, cudaMemcpyDeviceToHost));
    // Relative difference of the chunked outputs now in o_chunk to the token-serial ones.
    auto rel_to_serial = [&] {
      BENCH_CUDA(cudaMemcpy(hc.data(), o_chunk, hc.size() * 4, cudaMemcpyDeviceToHost));
      double num = 0, den = 0;
      for (size_t i = 0; i < hc.size(); ++i) {
        const double d = static_cast<double>(hc[i]) - hs[i];
        num += std::isnan(d) ? INFINITY : d * d;
        den += static_cast<double>(hs[i]) * hs[i];
      }
      return std::sqrt(num / std::max(den, 1e-300));
    };
    if (!run_from_zero(deltaserve::cuda::LaunchGdn2ChunkPrefill, ac)) return 1;
    const double rel = rel_to_serial();
    if (!run_from_zero(deltaserve::cuda::LaunchGdn2ChunkPrefill, at)) return 1;
    const double rel_tf32 = rel_to_serial();
    if (!run_from_zero(deltaserve::cuda::LaunchGdn2ChunkPrefill, ab)) return 1;
    const double rel_bf16 = rel_to_serial();
    if (!run_from_zero(deltaserve::cuda::LaunchGdn2ChunkPrefill, ap)) return 1;
    const double rel_bp = rel_to_serial();

    const int reps = a.total_tokens >= 65536 ? 10 : 30;
    auto time_chunk = [&](const Gdn2PrefillArgs& args) {
      return TimeSingle(
          stream, [&] { (void)deltaserve::cuda::LaunchGdn2ChunkPrefill(shape, args, stream); },
          reps);
    };
    auto time_phase = [&](Gdn2PrefillArgs args, int mask) {
      args.phase_mask = mask;
      return time_chunk(args);
    };
    // Best of the launcher's pick (reported as split count 0) and every explicit split count.
    struct Best {
      double s;
      int splits = 0;
    };
    auto best_of = [&](const Gdn2PrefillArgs& base, double auto_time) {
      Best b{auto_time};
      for (int splits : {2, 4, 8}) {
        Gdn2PrefillArgs asp = base;
        asp.splits = splits;
        const double t = time_chunk(asp);
        if (t < b.s) b = {t, splits};
      }
      return b;
    };
    const double auto_s = time_chunk(ac);
    const Best best = best_of(ac, auto_s);
    const double chunk_s = best.s;
    const double phase1_s = time_phase(ac, 1), phase2_s = time_phase(ac, 2);
    const Best tf32_best = best_of(at, time_chunk(at));
    const double tf32_s = tf32_best.s;
    const double tf32_phase1_s = time_phase(at, 1), tf32_phase2_s = time_phase(at, 2);
    const Best bf16_best = best_of(ab, time_chunk(ab));
    const double bf16_phase1_s = time_phase(ab, 1);
    const Best bp_best = best_of(ap, time_chunk(ap));
    const double bp_phase1_s = time_phase(ap, 1), bp_phase2_s = time_phase(ap, 2);
    const double serial_s = TimeSingle(
        stream, [&] { (void)deltaserve::cuda::LaunchGdn2SerialPrefill(shape, as, stream); },
        a.total_tokens >= 16384 ? 3 : 10);
    double flops = 0;
    for (int32_t l : cfg.lens) flops += deltaserve::cuda::Gdn2ChunkPrefillFlops(shape, l);
    rows.push_back({cfg.name, a.total_tokens, a.num_seqs, a.max_seq_len, chunk_s, best.splits,
                    auto_s, phase1_s, phase2_s, serial_s, flops, rel, tf32_s, tf32_best.splits,
                    tf32_phase1_s, tf32_phase2_s, rel_tf32, bf16_best.s, bf16_best.splits,
                    bf16_phase1_s, rel_bf16, bp_best.s, bp_best.splits, bp_phase1_s,
                    bp_phase2_s, rel_bp});
    std::printf("%-9s T=%6lld seqs=%2d: chunk %.3f ms, tf32 %.3f, bf16 in + tf32 %.3f, bf16 in + "
                "bf16 %.3f, serial %.3f; rel diff to serial %.2e / %.2e / %.2e / %.2e\n",
                cfg.name.c_str(), static_cast<long long>(a.total_tokens), a.num_seqs,
                chunk_s * 1e3, tf32_s * 1e3, bf16_best.s * 1e3, bp_best.s * 1e3, serial_s * 1e3,
                rel, rel_tf32, rel_bf16, rel_bp);
    std::fflush(stdout);
  }

  const std::vector<ModelRow> model_rows = model ? ModelPrefill(stream) : std::vector<ModelRow>{};

  std::FILE* f = OpenJsonReport(out_path, "gdn2_prefill", dev.name);
  if (f == nullptr) return 1;
  std::fprintf(f, "  \"sms\": %d,\n  \"phase2\": \"tensor_cores_3xtf32\",\n", dev.sms);
  std::fprintf(f, "  \"shape\": {\"heads\": %d, \"v_heads\": %d, \"dk\": %d, \"dv\": %d, "
               "\"chunk\": %d},\n  \"rows\": [\n",
               shape.num_heads, shape.num_v_heads, kD, kD, deltaserve::cuda::kGdn2PrefillChunk);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"config\": \"%s\", \"tokens\": %lld, \"seqs\": %d, \"max_len\": %d, "
                 "\"chunk_ms\": %.4f, \"chunk_tokens_per_s\": %.1f, \"chunk_tflops\": %.3f, "
                 "\"chunk_splits\": %d, \"chunk_auto_splits_ms\": %.4f, \"phase1_ms\": %.4f, "
                 "\"phase2_ms\": %.4f, "
                 "\"serial_ms\": %.4f, \"serial_tokens_per_s\": %.1f, \"speedup\": %.2f, "
                 "\"rel_diff_chunk_vs_serial\": %.3e, \"tf32_ms\": %.4f, "
                 "\"tf32_tokens_per_s\": %.1f, \"tf32_splits\": %d, \"tf32_phase1_ms\": %.4f, "
                 "\"tf32_phase2_ms\": %.4f, \"tf32_rel_diff_vs_serial\": %.3e, "
                 "\"bf16_in_tf32_ms\": %.4f, \"bf16_in_tf32_tokens_per_s\": %.1f, "
                 "\"bf16_in_tf32_splits\": %d, \"bf16_in_tf32_phase1_ms\": %.4f, "
                 "\"bf16_in_tf32_rel_diff_vs_f32_serial\": %.3e, \"bf16_in_bf16_ms\": %.4f, "
                 "\"bf16_in_bf16_tokens_per_s\": %.1f, \"bf16_in_bf16_splits\": %d, "
                 "\"bf16_in_bf16_phase1_ms\": %.4f, \"bf16_in_bf16_phase2_ms\": %.4f, "
                 "\"bf16_in_bf16_rel_diff_vs_f32_serial\": %.3e}%s\n",
                 r.name.c_str(), static_cast<long long>(r.tokens), r.seqs, r.max_len,
                 r.chunk_s * 1e3, r.tokens / r.chunk_s, r.flops / r.chunk_s / 1e12, r.splits,
                 r.auto_s * 1e3, r.phase1_s * 1e3, r.phase2_s * 1e3, r.serial_s * 1e3,
                 r.tokens / r.serial_s, r.serial_s / r.chunk_s, r.rel_diff, r.tf32_s * 1e3,
                 r.tokens / r.tf32_s, r.tf32_splits, r.tf32_phase1_s * 1e3, r.tf32_phase2_s * 1e3,
                 r.tf32_rel_diff, r.bf16_s * 1e3, r.tokens / r.bf16_s, r.bf16_splits,
                 r.bf16_phase1_s * 1e3, r.bf16_rel_diff, r.bp_s * 1e3, r.tokens / r.bp_s,
                 r.bp_splits, r.bp_phase1_s * 1e3, r.bp_phase2_s * 1e3, r.bp_rel_diff,
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ],\n  \"model_prefill_gdn2_1.3B\": [\n");
  for (size_t i = 0; i < model_rows.size(); ++i)
    std::fprintf(f, "    {\"tokens\": %lld, \"ms\": %.3f, \"tokens_per_s\": %.1f}%s\n",
                 static_cast<long long>(model_rows[i].tokens), model_rows[i].seconds * 1e3,
                 model_rows[i].tokens / model_rows[i].seconds, i + 1 < model_rows.size() ? "," : "");
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);

  std::printf("\n%-9s %6s %4s %9s %8s %7s %3s %9s %8s %8s %10s %8s %8s | %8s %8s %3s %7s %7s | "
              "%8s %8s %7s | %8s %8s %7s %7s\n",
              "config", "T", "seqs", "chunk ms", "M tok/s", "TFLOP/s", "spl", "auto ms", "p1 ms",
              "p2 ms", "serial ms", "M tok/s", "speedup", "tf32 ms", "M tok/s", "spl", "p1 ms",
              "p2 ms", "bf16i ms", "M tok/s", "p1 ms", "bf16 ms", "M tok/s", "p1 ms", "p2 ms");
  for (const Row& r : rows)
    std::printf("%-9s %6lld %4d %9.3f %8.2f %7.2f %3d %9.3f %8.3f %8.3f %10.3f %8.3f %8.1f | "
                "%8.3f %8.2f %3d %7.3f %7.3f | %8.3f %8.2f %7.3f | %8.3f %8.2f %7.3f %7.3f\n",
                r.name.c_str(), static_cast<long long>(r.tokens), r.seqs, r.chunk_s * 1e3,
                r.tokens / r.chunk_s / 1e6, r.flops / r.chunk_s / 1e12, r.splits, r.auto_s * 1e3,
                r.phase1_s * 1e3, r.phase2_s * 1e3, r.serial_s * 1e3, r.tokens / r.serial_s / 1e6,
                r.serial_s / r.chunk_s, r.tf32_s * 1e3, r.tokens / r.tf32_s / 1e6, r.tf32_splits,
                r.tf32_phase1_s * 1e3, r.tf32_phase2_s * 1e3, r.bf16_s * 1e3,
                r.tokens / r.bf16_s / 1e6, r.bf16_phase1_s * 1e3, r.bp_s * 1e3,
                r.tokens / r.bp_s / 1e6, r.bp_phase1_s * 1e3, r.bp_phase2_s * 1e3);
  for (const ModelRow& r : model_rows)
    std::printf("gdn2_1.3B prefill (device work of TTFT) T=%6lld: %9.3f ms\n",
                static_cast<long long>(r.tokens), r.seconds * 1e3);
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
