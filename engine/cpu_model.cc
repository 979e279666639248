// CpuModel implementation (see cpu_model.h). Buffers are [rows, width] row-major fp32 with the
// stacked tokens of all sequences as rows; sequence s owns rows [seq_row0_[s], + T_s).
#include "engine/cpu_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gdn2_recurrence.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/short_conv.h"
#include "kernels/cpu/swa_attention.h"

namespace deltaserve {

struct CpuModel::Layer {
  bool is_gdn2 = true;
  std::vector<float> norm_1, norm_2;
  // Linear weights are stored transposed, [in, out] (cpu::Linear).
  std::vector<float> w12;  // [d, 2I]: w1 columns then w2 columns
  std::vector<float> w3;   // [I, d]
  // GDN-2
  std::vector<float> in_proj;                       // [d, q|k|v|b|w|f0|g0 columns]
  std::vector<float> q_conv_t, k_conv_t, v_conv_t;  // [W, C]
  std::vector<float> f1, g1, g1_bias;
  std::vector<float> neg_exp_a;  // -exp(A_log), [H]
  std::vector<float> dt_bias, o_norm, o_proj;
  // SWA
  std::vector<float> attn, proj;
};

namespace {

constexpr int64_t kRowChunk = 32;  // rows per item of row-wise parallel loops
// Below this many floating-point operations a loop runs on the calling thread: waking the pool
// costs more than it saves (decode of a few sequences).
constexpr double kMinParallelFlops = 2e6;

void Append(std::vector<float>* dst, const TensorView& t) {
  const size_t at = dst->size();
  dst->resize(at + static_cast<size_t>(t.numel()));
  t.ToFloat(std::span<float>(dst->data() + at, static_cast<size_t>(t.numel())));
}

// Concatenates [out_i, in] weights along out and returns the transpose [in, sum out_i].
std::vector<float> TransposedLinear(std::initializer_list<const TensorView*> parts) {
  std::vector<float> rows;
  int64_t in = 0;
  for (const TensorView* t : parts) {
    Append(&rows, *t);
    in = t->shape[1];
  }
  const int64_t out = static_cast<int64_t>(rows.size()) / in;
  std::vector<float> wt(rows.size());
  cpu::TransposeMatrix(rows.data(), out, in, wt.data());
  return wt;
}

// [C, 1, W] -> [W, C].
std::vector<float> TransposeConv(const TensorView& t) {
  const std::vector<float> w = t.ToFloatVector();
  const int64_t C = t.shape[0];
  const int64_t W = t.shape[2];
  std::vector<float> out(static_cast<size_t>(C * W));
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t j = 0; j < W; ++j) out[j * C + c] = w[c * W + j];
  }
  return out;
}

template <typename T>
T* At(std::byte* slot, size_t offset) {
  return reinterpret_cast<T*>(slot + offset);
}

void Grow(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
}

}  // namespace

CpuModel::CpuModel(const ModelConfig& config, StateDtype state_dtype,
                   std::optional<StateDtype> ring_dtype, int threads)
    : config_(config),
      layout_(config, state_dtype, ring_dtype),
      pool_(threads > 0 ? threads : cpu::HardwareThreads()) {}

CpuModel::~CpuModel() = default;

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Load(const std::string& model_dir,
                                                         StateDtype state_dtype, int threads,
                                                         std::optional<StateDtype> ring_dtype) {
  absl::StatusOr<ModelConfig> config = ModelConfig::LoadFromDir(model_dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights = ModelWeights::Load(*config, model_dir);
  if (!weights.ok()) return weights.status();
  return Create(**weights, state_dtype, threads, ring_dtype);
}

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Create(
    const ModelWeights& weights, StateDtype state_dtype, int threads,
    std::optional<StateDtype> ring_dtype) {
  if (threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  const ModelConfig& c = weights.config();
  std::unique_ptr<CpuModel> m(new CpuModel(c, state_dtype, ring_dtype, threads));
  cpu::SetBlasThreads(m->pool_.num_threads());
  m->wte_ = weights.wte().ToFloatVector();
  m->lm_head_ = TransposedLinear({&weights.lm_head()});
  m->ln_f_ = weights.ln_f().ToFloatVector();

  const Gdn2Config& g = c.gdn2;
  const int64_t kd = g.key_dim(), vd = g.value_dim(), r = g.low_rank_dim();
  m->col_q_ = 0;
  m->col_k_ = kd;
  m->col_v_ = 2 * kd;
  m->col_b_ = 2 * kd + vd;
  m->col_w_ = 3 * kd + vd;
  m->col_f0_ = 3 * kd + 2 * vd;
  m->col_g0_ = m->col_f0_ + r;
  m->gdn2_proj_cols_ = m->col_g0_ + r;

  for (int i = 0; i < c.n_layer; ++i) {
    const LayerWeights& w = weights.layers()[i];
    auto L = std::make_unique<Layer>();
    L->is_gdn2 = w.is_gdn2;
    L->norm_1 = w.norm_1.ToFloatVector();
    L->norm_2 = w.norm_2.ToFloatVector();
    L->w12 = TransposedLinear({&w.w1, &w.w2});
    L->w3 = TransposedLinear({&w.w3});
    if (w.is_gdn2) {
      const Gdn2LayerWeights& G = w.gdn2;
      L->in_proj = TransposedLinear(
          {&G.q_proj, &G.k_proj, &G.v_proj, &G.b_proj, &G.w_proj, &G.f_proj0, &G.g_proj0});
      L->q_conv_t = TransposeConv(G.q_conv1d);
      L->k_conv_t = TransposeConv(G.k_conv1d);
      L->v_conv_t = TransposeConv(G.v_conv1d);
      L->f1 = TransposedLinear({&G.f_proj1});
      L->g1 = TransposedLinear({&G.g_proj1});
      L->g1_bias = G.g_proj1_bias.ToFloatVector();
      L->neg_exp_a = G.A_log.ToFloatVector();
      for (float& a : L->neg_exp_a) a = static_cast<float>(-std::exp(static_cast<double>(a)));
      L->dt_bias = G.dt_bias.ToFloatVector();
      L->o_norm = G.o_norm.ToFloatVector();
      L->o_proj = TransposedLinear({&G.o_proj});
    } else {
      L->attn = TransposedLinear({&w.swa.attn});
      L->proj = TransposedLinear({&w.swa.proj});
    }
    m->layers_.push_back(std::move(L));
  }

  // Per-thread scratch: a widened recurrent state plus the recurrence's vectors, or the
  // attention's score row.
  int64_t scratch = 0;
  if (c.NumGdn2Layers() > 0) {
    scratch =
        static_cast<int64_t>(g.head_k_dim) * g.head_v_dim + 3 * g.head_v_dim + 2 * g.head_k_dim;
  }
  if (c.NumSwaLayers() > 0) scratch = std::max<int64_t>(scratch, c.swa.local_window);
  m->thread_scratch_.resize(m->pool_.num_threads());
  for (auto& s : m->thread_scratch_) s.resize(static_cast<size_t>(scratch));
  return m;
}

void CpuModel::ParallelFor(int64_t n, double flops, const std::function<void(int64_t, int)>& fn) {
  if (flops < kMinParallelFlops) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  pool_.ParallelFor(n, fn);
}

void CpuModel::Reserve(int64_t rows) {
  if (rows <= capacity_rows_) return;
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd;
  const int64_t I = c.intermediate_size;
  Grow(&x_, rows * d);
  Grow(&n_, rows * d);
  int64_t proj_cols = 2 * I;
  int64_t o_cols = 0;
  if (c.NumGdn2Layers() > 0) {
    const int64_t kd = c.gdn2.key_dim(), vd = c.gdn2.value_dim();
    proj_cols = std::max(proj_cols, gdn2_proj_cols_);
    o_cols = std::max(o_cols, vd);
    Grow(&qc_, rows * kd);
    Grow(&kc_, rows * kd);
    Grow(&vc_, rows * vd);
    Grow(&f_, rows * kd);
    Grow(&z_, rows * vd);
  }
  if (c.NumSwaLayers() > 0) {
    const SwaConfig& s = c.swa;
    proj_cols = std::max<int64_t>(proj_cols, s.qkv_rows());
    o_cols = std::max<int64_t>(o_cols, static_cast<int64_t>(s.n_head) * s.head_size);
    Grow(&sq_, rows * s.n_head * s.head_size);
    Grow(&sk_, rows * s.n_query_groups * s.head_size);
    Grow(&sv_, rows * s.n_query_groups * s.head_size);
  }
  Grow(&proj_, rows * proj_cols);
  Grow(&o_, rows * o_cols);
  Grow(&logit_rows_, rows * d);
  capacity_rows_ = rows;
}

absl::StatusOr<std::vector<float>> CpuModel::Run(std::byte* slot, std::span<const int32_t> tokens,
                                                 bool all_positions) {
  Sequence s{slot, tokens, true};
  std::vector<float> logits;
  if (absl::Status st = Forward(std::span<const Sequence>(&s, 1), all_positions, &logits);
      !st.ok()) {
    return st;
  }
  return logits;
}

absl::Status CpuModel::Forward(std::span<const Sequence> seqs, bool all_positions,
                               std::vector<float>* logits) {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd;
  const int64_t V = c.padded_vocab_size;
  // Validate everything before touching any slot.
  int64_t N = 0;
  int64_t logit_rows = 0;
  slot_check_.clear();
  for (size_t s = 0; s < seqs.size(); ++s) {
    const Sequence& q = seqs[s];
    if (q.slot == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": null slot"));
    }
    if (reinterpret_cast<uintptr_t>(q.slot) % 8 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, ": slot is not 8-byte aligned"));
    }
    if (q.tokens.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": no tokens"));
    }
    for (size_t t = 0; t < q.tokens.size(); ++t) {
      if (q.tokens[t] < 0 || q.tokens[t] >= c.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": token ", t, " (",
                                                       q.tokens[t], ") is outside [0, ",
                                                       c.vocab_size, ")"));
      }
    }
    slot_check_.push_back(q.slot);
    N += static_cast<int64_t>(q.tokens.size());
    if (q.want_logits) logit_rows += all_positions ? static_cast<int64_t>(q.tokens.size()) : 1;
  }
  std::sort(slot_check_.begin(), slot_check_.end());
  if (std::adjacent_find(slot_check_.begin(), slot_check_.end()) != slot_check_.end()) {
    return absl::InvalidArgumentError("a slot appears twice in the batch");
  }
  logits->resize(static_cast<size_t>(logit_rows * V));
  if (N == 0) return absl::OkStatus();
  Reserve(N);
  rows_ = N;
  seq_row0_.resize(seqs.size());
  seq_pos0_.resize(seqs.size());
  int64_t row = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    seq_row0_[s] = row;
    std::memcpy(&seq_pos0_[s], seqs[s].slot + layout_.position_offset(), sizeof(int64_t));
    for (int32_t tok : seqs[s].tokens) {
      std::memcpy(x_.data() + row * d, wte_.data() + static_cast<int64_t>(tok) * d,
                  d * sizeof(float));
      ++row;
    }
  }

  const float eps = static_cast<float>(c.norm_eps);
  for (int li = 0; li < c.n_layer; ++li) {
    const Layer& L = *layers_[li];
    cpu::RmsNormRows(x_.data(), d, N, d, L.norm_1.data(), eps, n_.data(), d);
    if (L.is_gdn2) {
      RunGdn2Layer(li, seqs);
    } else {
      RunSwaLayer(li, seqs);
    }
    cpu::RmsNormRows(x_.data(), d, N, d, L.norm_2.data(), eps, n_.data(), d);
    RunMlp(li);
  }

  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t pos = seq_pos0_[s] + static_cast<int64_t>(seqs[s].tokens.size());
    std::memcpy(seqs[s].slot + layout_.position_offset(), &pos, sizeof(int64_t));
  }

  if (logit_rows == 0) return absl::OkStatus();
  int64_t r = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (!seqs[s].want_logits) continue;
    const int64_t T = static_cast<int64_t>(seqs[s].tokens.size());
    const int64_t first = all_positions ? seq_row0_[s] : seq_row0_[s] + T - 1;
    const int64_t count = all_positions ? T : 1;
    cpu::RmsNormRows(x_.data() + first * d, d, count, d, ln_f_.data(), eps,
                     logit_rows_.data() + r * d, d);
    r += count;
  }
  cpu::Linear(logit_rows_.data(), d, logit_rows, d, lm_head_.data(), V, logits->data(), V);
  return absl::OkStatus();
}

void CpuModel::RunGdn2Layer(int li, std::span<const Sequence> seqs) {
  const Layer& L = *layers_[li];
  const ModelConfig& c = config_;
  const Gdn2Config& g = c.gdn2;
  const int64_t d = c.n_embd;
  const int64_t N = rows_;
  const int64_t kd = g.key_dim(), vd = g.value_dim();
  const int dk = g.head_k_dim, dv = g.head_v_dim;
  const int H = g.num_heads, HV = g.num_v_heads;
  const int W = g.conv_size;
  const int64_t P = gdn2_proj_cols_;
  const LayerStateRegions& regions = layout_.layer(li);
  float* proj = proj_.data();

  // 1. All input projections in one product.
  cpu::Linear(n_.data(), d, N, d, L.in_proj.data(), P, proj, P);

  // 2. Short convolutions with history, then SiLU; one item per (sequence, q/k/v).
  ParallelFor(
      static_cast<int64_t>(seqs.size()) * 3, 2.0 * N * (2 * kd + vd) * W, [&](int64_t item, int) {
        const size_t s = static_cast<size_t>(item / 3);
        const int which = static_cast<int>(item % 3);
        const int64_t row0 = seq_row0_[s];
        const int64_t T = static_cast<int64_t>(seqs[s].tokens.size());
        const int64_t C = which == 2 ? vd : kd;
        const int64_t col = which == 0 ? col_q_ : which == 1 ? col_k_ : col_v_;
        const float* w_t = which == 0   ? L.q_conv_t.data()
                           : which == 1 ? L.k_conv_t.data()
                                        : L.v_conv_t.data();
        const size_t hist_off = which == 0   ? regions.gdn2.conv_q
                                : which == 1 ? regions.gdn2.conv_k
                                             : regions.gdn2.conv_v;
        float* out = (which == 0 ? qc_.data() : which == 1 ? kc_.data() : vc_.data()) + row0 * C;
        cpu::ShortConvWithHistory(proj + row0 * P + col, P, T, C, w_t, W,
                                  At<float>(seqs[s].slot, hist_off), /*silu=*/true, out, C);
      });

  // 3-5, 7 (row-wise): q/k normalisation, gates, log-decay, output-gate activation.
  const float q_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dk)));
  const float b_scale = g.allow_neg_eigval ? 2.0f : 1.0f;
  const bool sigmoid_gate = g.gate_act == GateActivation::kSigmoid;
  cpu::Linear(proj + col_f0_, P, N, dv, L.f1.data(), kd, f_.data(), kd);
  cpu::Linear(proj + col_g0_, P, N, dv, L.g1.data(), vd, z_.data(), vd);
  ParallelFor((N + kRowChunk - 1) / kRowChunk, 10.0 * N * (4 * kd + 2 * vd),
              [&](int64_t chunk, int) {
                const int64_t r0 = chunk * kRowChunk;
                const int64_t rows = std::min(kRowChunk, N - r0);
                cpu::L2NormHeadsRows(qc_.data() + r0 * kd, kd, rows, H, dk, 1e-6f, q_scale);
                cpu::L2NormHeadsRows(kc_.data() + r0 * kd, kd, rows, H, dk, 1e-6f, 1.0f);
                for (int64_t r = r0; r < r0 + rows; ++r) {
                  float* pr = proj + r * P;
                  for (int64_t i = 0; i < kd; ++i)
                    pr[col_b_ + i] = cpu::Sigmoid(pr[col_b_ + i]) * b_scale;
                  for (int64_t i = 0; i < vd; ++i) pr[col_w_ + i] = cpu::Sigmoid(pr[col_w_ + i]);
                  float* fr = f_.data() + r * kd;
                  for (int64_t i = 0; i < kd; ++i) {
                    fr[i] = L.neg_exp_a[i / dk] * cpu::Softplus(fr[i] + L.dt_bias[i]);
                  }
                  float* zr = z_.data() + r * vd;
                  for (int64_t i = 0; i < vd; ++i) {
                    const float zi = zr[i] + L.g1_bias[i];
                    zr[i] = sigmoid_gate ? cpu::Sigmoid(zi) : cpu::Silu(zi);
                  }
                }
              });

  // 6-7 (per value head): recurrence, then rmsnorm(o) * gamma * act(z).
  const bool bf16 = layout_.state_dtype() == StateDtype::kBF16;
  const int64_t head_elems = static_cast<int64_t>(dk) * dv;
  const int group = HV / H;
  const float eps = static_cast<float>(c.norm_eps);
  ParallelFor(static_cast<int64_t>(seqs.size()) * HV, 6.0 * N * HV * head_elems,
              [&](int64_t item, int thread) {
                const size_t s = static_cast<size_t>(item / HV);
                const int hv = static_cast<int>(item % HV);
                const int kh = hv / group;
                const int64_t row0 = seq_row0_[s];
                const int64_t T = static_cast<int64_t>(seqs[s].tokens.size());
                float* scratch = thread_scratch_[thread].data();
                std::byte* state_bytes =
                    seqs[s].slot + regions.gdn2.recurrent +
                    static_cast<size_t>(hv) * head_elems * StateDtypeBytes(layout_.state_dtype());
                float* S;
                if (bf16) {
                  S = scratch;
                  scratch += head_elems;
                  cpu::Bf16ToFloatN(state_bytes, S, head_elems);
                } else {
                  S = reinterpret_cast<float*>(state_bytes);
                }
                cpu::Gdn2HeadArgs a;
                a.T = T;
                a.dk = dk;
                a.dv = dv;
                a.q = qc_.data() + row0 * kd + static_cast<int64_t>(kh) * dk;
                a.ld_q = kd;
                a.k = kc_.data() + row0 * kd + static_cast<int64_t>(kh) * dk;
                a.ld_k = kd;
                a.g = f_.data() + row0 * kd + static_cast<int64_t>(kh) * dk;
                a.ld_g = kd;
                a.b = proj + row0 * P + col_b_ + static_cast<int64_t>(kh) * dk;
                a.ld_b = P;
                a.v = vc_.data() + row0 * vd + static_cast<int64_t>(hv) * dv;
                a.ld_v = vd;
                a.w = proj + row0 * P + col_w_ + static_cast<int64_t>(hv) * dv;
                a.ld_w = P;
                a.state = S;
                a.o = o_.data() + row0 * vd + static_cast<int64_t>(hv) * dv;
                a.ld_o = vd;
                a.scratch = scratch;
                cpu::Gdn2HeadRecurrence(a);
                if (bf16) cpu::FloatToBf16N(S, state_bytes, head_elems);
                // Output gate, in place on this head's slice of o.
                cpu::RmsNormRows(a.o, vd, T, dv, L.o_norm.data(), eps, a.o, vd);
                for (int64_t t = 0; t < T; ++t) {
                  float* o = a.o + t * vd;
                  const float* z = z_.data() + (row0 + t) * vd + static_cast<int64_t>(hv) * dv;
                  for (int j = 0; j < dv; ++j) o[j] *= z[j];
                }
              });

  // 8. Output projection, added to the residual stream.
  cpu::Linear(o_.data(), vd, N, vd, L.o_proj.data(), d, x_.data(), d, /*beta=*/1.0f);
}

void CpuModel::RunSwaLayer(int li, std::span<const Sequence> seqs) {
  const Layer& L = *layers_[li];
  const ModelConfig& c = config_;
  const SwaConfig& sw = c.swa;
  const int64_t d = c.n_embd;
  const int64_t N = rows_;
  const int hs = sw.head_size;
  const int nh = sw.n_head, G = sw.n_query_groups;
  const int qpg = nh / G;
  const int64_t qkv = sw.qkv_rows();
  const int64_t qw = static_cast<int64_t>(nh) * hs;
  const int64_t kvw = static_cast<int64_t>(G) * hs;
  const LayerStateRegions& regions = layout_.layer(li);
  float* proj = proj_.data();
  const bool ring_bf16 = layout_.ring_dtype() == StateDtype::kBF16;
  const size_t ring_bytes = StateDtypeBytes(layout_.ring_dtype());  // per element

  cpu::Linear(n_.data(), d, N, d, L.attn.data(), qkv, proj, qkv);
  // Split [group][q heads.., k, v][hs] into q [N, nh*hs], k and v [N, G*hs].
  ParallelFor((N + kRowChunk - 1) / kRowChunk, 1.0 * N * qkv, [&](int64_t chunk, int) {
    const int64_t r0 = chunk * kRowChunk;
    const int64_t r1 = std::min(N, r0 + kRowChunk);
    for (int64_t r = r0; r < r1; ++r) {
      const float* pr = proj + r * qkv;
      for (int gi = 0; gi < G; ++gi) {
        const float* base = pr + static_cast<int64_t>(gi) * (qpg + 2) * hs;
        std::memcpy(sq_.data() + r * qw + static_cast<int64_t>(gi) * qpg * hs, base,
                    static_cast<size_t>(qpg) * hs * sizeof(float));
        std::memcpy(sk_.data() + r * kvw + static_cast<int64_t>(gi) * hs,
                    base + static_cast<int64_t>(qpg) * hs, hs * sizeof(float));
        std::memcpy(sv_.data() + r * kvw + static_cast<int64_t>(gi) * hs,
                    base + static_cast<int64_t>(qpg + 1) * hs, hs * sizeof(float));
      }
    }
  });
  ParallelFor(static_cast<int64_t>(seqs.size()), 10.0 * N * (nh + G) * sw.rope_dims(),
              [&](int64_t s, int) {
                const int64_t row0 = seq_row0_[s];
                const int64_t T = static_cast<int64_t>(seqs[s].tokens.size());
                cpu::ApplyRopeNeox(sq_.data() + row0 * qw, qw, T, seq_pos0_[s], nh, hs,
                                   sw.rope_dims(), sw.rope_base);
                cpu::ApplyRopeNeox(sk_.data() + row0 * kvw, kvw, T, seq_pos0_[s], G, hs,
                                   sw.rope_dims(), sw.rope_base);
              });
  ParallelFor(
      static_cast<int64_t>(seqs.size()) * G, 4.0 * N * nh * sw.local_window * hs,
      [&](int64_t item, int thread) {
        const size_t s = static_cast<size_t>(item / G);
        const int gi = static_cast<int>(item % G);
        const int64_t row0 = seq_row0_[s];
        cpu::SwaGroupArgs a;
        a.T = static_cast<int64_t>(seqs[s].tokens.size());
        a.pos0 = seq_pos0_[s];
        a.window = sw.local_window;
        a.q_heads = qpg;
        a.head_size = hs;
        a.q = sq_.data() + row0 * qw + static_cast<int64_t>(gi) * qpg * hs;
        a.ld_q = qw;
        a.k = sk_.data() + row0 * kvw + static_cast<int64_t>(gi) * hs;
        a.v = sv_.data() + row0 * kvw + static_cast<int64_t>(gi) * hs;
        a.ld_kv = kvw;
        const size_t group_bytes = static_cast<size_t>(gi) * hs * ring_bytes;
        a.k_ring = At<std::byte>(seqs[s].slot, regions.swa.k_ring + group_bytes);
        a.v_ring = At<std::byte>(seqs[s].slot, regions.swa.v_ring + group_bytes);
        a.ring_bf16 = ring_bf16;
        a.ld_ring = kvw;
        a.out = o_.data() + row0 * qw + static_cast<int64_t>(gi) * qpg * hs;
        a.ld_out = qw;
        a.scratch = thread_scratch_[thread].data();
        cpu::SwaGroupAttention(a);
      });
  cpu::Linear(o_.data(), qw, N, qw, L.proj.data(), d, x_.data(), d, /*beta=*/1.0f);
}

void CpuModel::RunMlp(int li) {
  const Layer& L = *layers_[li];
  const int64_t d = config_.n_embd;
  const int64_t I = config_.intermediate_size;
  const int64_t N = rows_;
  float* h = proj_.data();
  cpu::Linear(n_.data(), d, N, d, L.w12.data(), 2 * I, h, 2 * I);
  ParallelFor((N + kRowChunk - 1) / kRowChunk, 10.0 * N * I, [&](int64_t chunk, int) {
    const int64_t r0 = chunk * kRowChunk;
    const int64_t rows = std::min(kRowChunk, N - r0);
    cpu::SwiGluRows(h + r0 * 2 * I, h + r0 * 2 * I + I, 2 * I, rows, I, h + r0 * 2 * I, 2 * I);
  });
  cpu::Linear(h, 2 * I, N, I, L.w3.data(), d, x_.data(), d, /*beta=*/1.0f);
}

}  // namespace deltaserve
