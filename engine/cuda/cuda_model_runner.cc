// CudaModelRunner implementation (see cuda_model_runner.h).
#include "engine/cuda/cuda_model_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/model_weights.h"
#include "engine/sampler.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gdn2_chunk_prefill.h"
#include "kernels/cuda/gdn2_decode.h"
#include "kernels/cuda/gdn2_prefill_ops.h"
#include "kernels/cuda/gate_products.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/short_conv_prefill.h"
#include "kernels/cuda/status_util.h"
#include "kernels/cuda/swa_decode.h"
#include "kernels/cuda/swa_prefill.h"

namespace deltaserve {
namespace {

#define DS_RETURN_IF_ERROR(expr)   \
  do {                             \
    absl::Status s_ = (expr);      \
    if (!s_.ok()) return s_;       \
  } while (0)

// The kernels' view of the model's mixer geometry, derived from the config in one place.
cuda::Gdn2DecodeShape Gdn2ShapeOf(const ModelConfig& c) {
  const Gdn2Config& gd = c.gdn2;
  cuda::Gdn2DecodeShape shape;
  shape.num_heads = gd.num_heads;
  shape.num_v_heads = gd.num_v_heads;
  shape.head_k_dim = gd.head_k_dim;
  shape.head_v_dim = gd.head_v_dim;
  shape.conv_size = gd.conv_size;
  shape.allow_neg_eigval = gd.allow_neg_eigval;
  shape.gate_sigmoid = gd.gate_act == GateActivation::kSigmoid;
  shape.norm_eps = static_cast<float>(c.norm_eps);
  return shape;
}

// Column `col` of the projection output `proj`, whose elements are `type` (f32 or bf16).
const void* ProjColumn(const void* proj, cuda::DType type, int64_t col) {
  return static_cast<const char*>(proj) + col * cuda::DTypeBytes(type);
}

// The SWA layers' shape, with rings stored as `ring_dtype`.
cuda::SwaDecodeShape SwaShapeOf(const ModelConfig& c, StateDtype ring_dtype) {
  const SwaConfig& sw = c.swa;
  cuda::SwaDecodeShape s{sw.n_head,       sw.n_query_groups, sw.head_size,
                         sw.local_window, sw.rope_dims(),    sw.rope_base};
  s.ring_type = ring_dtype == StateDtype::kBF16 ? cuda::DType::kBF16 : cuda::DType::kF32;
  return s;
}

}  // namespace

struct CudaModelRunner::Buffers {
  std::vector<void*> allocs;
  int32_t* slots = nullptr;   // [max_rows]
  int32_t* tokens = nullptr;  // [max_rows]
  float* x = nullptr;         // [max_rows, d] residual stream
  void* n = nullptr;          // bf16 [max_rows, d]
  float* proj = nullptr;      // [max_rows, proj_cols]
  int64_t proj_cols = 0;
  void* f0g0 = nullptr;       // bf16 [max_rows, 2*dv]
  float* f = nullptr;         // [max_rows, key_dim]
  float* z = nullptr;         // [max_rows, value_dim]
  void* y = nullptr;          // bf16 [max_rows, y_cols]
  int64_t y_cols = 0;
  float* logits = nullptr;    // [max_rows, padded_vocab]
  float* swa_scratch = nullptr;
  int64_t swa_scratch_floats = 0;
  uint32_t* swa_counters = nullptr;  // [max_rows, n_head], zero between launches
  int64_t swa_num_counters = 0;
  float* gdn2_prep = nullptr;
  int64_t gdn2_prep_floats = 0;
  // Sampling.
  int32_t* row_index = nullptr;
  cuda::SampleRowParams* sample_params = nullptr;
  cuda::PenaltyRowParams* penalty_params = nullptr;
  cuda::PenaltyEntry* penalties = nullptr;
  int64_t penalty_capacity = 0;
  float* sample_scratch = nullptr;
  int32_t* sampled = nullptr;
  float* sampled_logprob = nullptr;
  // Chunked prefill (allocated only when that path is active); Pt = packed rows per pass.
  int32_t* p_tokens = nullptr;  // [Pt]
  int32_t* p_cu = nullptr;      // [max_rows + 1]
  int32_t* p_slots = nullptr;   // [max_rows]
  int32_t* p_iota = nullptr;    // [max_rows] 0, 1, ... (slots of the fp32 scratch pool)
  float* p_x = nullptr;         // [Pt, d]
  void* p_n = nullptr;          // bf16 [Pt, d]
  float* p_proj = nullptr;      // [Pt, proj_cols]
  void* p_f0g0 = nullptr;       // bf16 [Pt, 2*dv]
  float* p_f = nullptr;         // [Pt, key_dim]
  float* p_z = nullptr;         // [Pt, value_dim]
  float* p_qc = nullptr;        // [Pt, key_dim]
  float* p_kc = nullptr;        // [Pt, key_dim]
  float* p_vc = nullptr;        // [Pt, value_dim]
  float* p_o = nullptr;         // [Pt, o_cols]
  int64_t o_cols = 0;
  void* p_y = nullptr;          // bf16 [Pt, y_cols]
  float* p_swa_scratch = nullptr;
  int64_t p_swa_scratch_floats = 0;
  float* p_ws = nullptr;
  int64_t p_ws_floats = 0;
  void* p_eye = nullptr;        // bf16 [dv, dv] identity (bf16 state only)
  float* p_state = nullptr;     // fp32 [p_state_slots, HV*dk*dv] (bf16 state only)
  int64_t p_state_slots = 0;

  ~Buffers() {
    for (void* p : allocs) cudaFree(p);
  }
  template <typename T>
  absl::Status Alloc(T** dst, int64_t count) {
    void* p = nullptr;
    if (cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T)) !=
        cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", count * sizeof(T), " bytes of GPU scratch"));
    }
    allocs.push_back(p);
    *dst = static_cast<T*>(p);
    return absl::OkStatus();
  }
  absl::Status AllocBytes(void** dst, int64_t bytes) {
    char* p = nullptr;
    DS_RETURN_IF_ERROR(Alloc(&p, bytes));
    *dst = p;
    return absl::OkStatus();
  }
};

CudaModelRunner::CudaModelRunner(std::unique_ptr<DeviceWeights> weights,
                                 const CudaRunnerOptions& options)
    : weights_(std::move(weights)),
      options_(options),
      layout_(weights_->config(), options.state_dtype, options.ring_dtype) {}

CudaModelRunner::~CudaModelRunner() {
  for (auto& [size, exec] : graphs_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
  buf_.reset();
  storage_.reset();
  gemm_.reset();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Load(
    const std::string& model_dir, const CudaRunnerOptions& options) {
  DS_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  absl::StatusOr<ModelConfig> config = ModelConfig::LoadFromDir(model_dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<ModelWeights>> weights = ModelWeights::Load(*config, model_dir);
  if (!weights.ok()) return weights.status();
  absl::StatusOr<std::unique_ptr<DeviceWeights>> dw = DeviceWeights::Upload(**weights);
  if (!dw.ok()) return dw.status();
  return Create(*std::move(dw), options);
}

absl::StatusOr<std::unique_ptr<CudaModelRunner>> CudaModelRunner::Create(
    std::unique_ptr<DeviceWeights> weights, const CudaRunnerOptions& options) {
  if (weights == nullptr) return absl::InvalidArgumentError("CudaModelRunner: no weights");
  if (options.num_slots < 1)
    return absl::InvalidArgumentError(absl::StrCat("num_slots (", options.num_slots, ") must be >= 1"));
  if (options.max_step_tokens < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens (", options.max_step_tokens, ") must be >= 1"));
  if (options.max_rows < 1 || options.max_rows > 65535)
    return absl::InvalidArgumentError(absl::StrCat("max_rows (", options.max_rows, ") must be in [1, 65535]"));
  if (options.gemv_max_rows < 0 || options.gemv_max_rows > cuda::kGemvMaxRows)
    return absl::InvalidArgumentError(absl::StrCat("gemv_max_rows (", options.gemv_max_rows,
                                                   ") must be in [0, ", cuda::kGemvMaxRows, "]"));
  if (options.fold_gates_from_rows < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "fold_gates_from_rows (", options.fold_gates_from_rows, ") must be >= 0"));
  for (int b : options.graph_batch_sizes) {
    if (b < 1 || b > options.max_rows)
      return absl::InvalidArgumentError(absl::StrCat("graph batch size ", b, " not in [1, max_rows = ",
                                                     options.max_rows, "]"));
  }
  DS_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  std::unique_ptr<CudaModelRunner> r(new CudaModelRunner(std::move(weights), options));
  DS_RETURN_IF_ERROR(r->Init());
  return r;
}

absl::Status CudaModelRunner::Init() {
  DS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  absl::StatusOr<std::unique_ptr<DeviceStateStorage>> st =
      DeviceStateStorage::Create(layout_, options_.num_slots, stream_);
  if (!st.ok()) return st.status();
  storage_ = *std::move(st);
  absl::StatusOr<std::unique_ptr<cuda::Gemm>> g = cuda::Gemm::Create();
  if (!g.ok()) return g.status();
  gemm_ = *std::move(g);

  const ModelConfig& c = config();
  const int64_t R = options_.max_rows, d = c.n_embd, V = c.padded_vocab_size;
  const Gdn2Config& gd = c.gdn2;
  const SwaConfig& sw = c.swa;
  buf_ = std::make_unique<Buffers>();
  Buffers& b = *buf_;
  b.proj_cols = 2 * int64_t{c.intermediate_size};
  b.y_cols = c.intermediate_size;
  if (c.NumGdn2Layers() > 0) {
    b.proj_cols = std::max<int64_t>(b.proj_cols, weights_->layers()[0].gdn2.in_rows);
    for (const DeviceLayerWeights& L : weights_->layers())
      if (L.is_gdn2) b.proj_cols = std::max(b.proj_cols, L.gdn2.in_rows);
    b.y_cols = std::max<int64_t>(b.y_cols, gd.value_dim());
  }
  const cuda::SwaDecodeShape swa_shape = SwaShapeOf(c, layout_.ring_dtype());
  if (c.NumSwaLayers() > 0) {
    b.proj_cols = std::max<int64_t>(b.proj_cols, sw.qkv_rows());
    b.y_cols = std::max<int64_t>(b.y_cols, int64_t{sw.n_head} * sw.head_size);
    for (int rows = 1; rows <= R; ++rows) {
      b.swa_scratch_floats = std::max(
          b.swa_scratch_floats,
          cuda::SwaDecodeScratchFloats(swa_shape, rows, cuda::SwaDecodeSplits(swa_shape, rows, 0)));
    }
  }
  // Row strides of bf16 GEMM operands must be multiples of 8 elements.
  b.proj_cols = (b.proj_cols + 7) / 8 * 8;
  b.y_cols = (b.y_cols + 7) / 8 * 8;
  DS_RETURN_IF_ERROR(b.Alloc(&b.slots, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.tokens, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.x, R * d));
  DS_RETURN_IF_ERROR(b.AllocBytes(&b.n, R * d * 2));
  DS_RETURN_IF_ERROR(b.Alloc(&b.proj, R * b.proj_cols));
  DS_RETURN_IF_ERROR(b.AllocBytes(&b.f0g0, R * 2 * int64_t{gd.head_v_dim} * 2));
  DS_RETURN_IF_ERROR(b.Alloc(&b.f, R * gd.key_dim()));
  DS_RETURN_IF_ERROR(b.Alloc(&b.z, R * gd.value_dim()));
  DS_RETURN_IF_ERROR(b.AllocBytes(&b.y, R * b.y_cols * 2));
  DS_RETURN_IF_ERROR(b.Alloc(&b.logits, R * V));
  DS_RETURN_IF_ERROR(b.Alloc(&b.swa_scratch, b.swa_scratch_floats));
  b.swa_num_counters = c.NumSwaLayers() > 0 ? R * int64_t{sw.n_head} : 0;
  DS_RETURN_IF_ERROR(b.Alloc(&b.swa_counters, b.swa_num_counters));
  DS_CUDA_RETURN_IF_ERROR(
      cudaMemset(b.swa_counters, 0, std::max<int64_t>(b.swa_num_counters, 1) * sizeof(uint32_t)));
  b.gdn2_prep_floats = cuda::Gdn2DecodePrepFloats(Gdn2ShapeOf(c), static_cast<int>(R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.gdn2_prep, b.gdn2_prep_floats));
  // The streamed decode's ready words start zero; each launch leaves them zero.
  DS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b.gdn2_prep, 0, b.gdn2_prep_floats * 4, stream_));
  DS_RETURN_IF_ERROR(b.Alloc(&b.row_index, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.sample_params, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.penalty_params, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.sample_scratch, R * V));
  DS_RETURN_IF_ERROR(b.Alloc(&b.sampled, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.sampled_logprob, R));
  b.penalty_capacity = 0;
  DS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b.x, 0, R * d * 4, stream_));
  chunked_ = options_.chunked_prefill && ChunkedPrefillSupported();
  if (chunked_) DS_RETURN_IF_ERROR(InitPrefill());
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

bool CudaModelRunner::ChunkedPrefillSupported() const {
  const ModelConfig& c = config();
  if (c.NumGdn2Layers() > 0 && (c.gdn2.head_k_dim != 128 ||
                                c.gdn2.head_v_dim != 128))
    return false;  // gdn2_chunk_prefill.h: dk = dv = 128
  if (c.NumSwaLayers() > 0) {
    const int hs = c.swa.head_size;
    if (hs != 32 && hs != 64 && hs != 96 && hs != 128) return false;
  }
  return true;
}

absl::Status CudaModelRunner::InitPrefill() {
  if (options_.prefill_pass_tokens < 1)
    return absl::InvalidArgumentError(absl::StrCat("prefill_pass_tokens (",
                                                   options_.prefill_pass_tokens, ") must be >= 1"));
  const ModelConfig& c = config();
  const Gdn2Config& gd = c.gdn2;
  const SwaConfig& sw = c.swa;
  Buffers& b = *buf_;
  // Row-wise launchers take at most 65535 rows per launch (a grid dimension).
  const int64_t Pt = std::min({options_.prefill_pass_tokens, options_.max_step_tokens, int64_t{32768}});
  pass_tokens_ = Pt;
  const int64_t R = options_.max_rows, d = c.n_embd, kd = gd.key_dim(), vd = gd.value_dim();
  b.o_cols = std::max<int64_t>(vd, int64_t{sw.n_head} * sw.head_size);
  b.o_cols = (b.o_cols + 7) / 8 * 8;
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_tokens, Pt));
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_cu, R + 1));
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_slots, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_iota, R));
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_x, Pt * d));
  DS_RETURN_IF_ERROR(b.AllocBytes(&b.p_n, Pt * d * 2));
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_proj, Pt * b.proj_cols));
  DS_RETURN_IF_ERROR(b.Alloc(&b.p_o, Pt * b.o_cols));
  DS_RETURN_IF_ERROR(b.AllocBytes(&b.p_y, Pt * b.y_cols * 2));
  if (c.NumGdn2Layers() > 0) {
    DS_RETURN_IF_ERROR(b.AllocBytes(&b.p_f0g0, Pt * 2 * int64_t{gd.head_v_dim} * 2));
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_f, Pt * kd));
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_z, Pt * vd));
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_qc, Pt * kd));
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_kc, Pt * kd));
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_vc, Pt * vd));
    cuda::Gdn2PrefillShape ps{gd.num_heads, gd.num_v_heads, gd.head_k_dim, gd.head_v_dim};
    b.p_ws_floats = cuda::Gdn2ChunkWorkspaceFloats(ps, Pt, static_cast<int>(std::min(R, Pt)),
                                                   options_.prefill_precision);
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_ws, b.p_ws_floats));
    if (layout_.state_dtype() == StateDtype::kBF16) {
      const int64_t dv = gd.head_v_dim;
      std::vector<uint16_t> eye(dv * dv, 0);
      for (int64_t i = 0; i < dv; ++i) eye[i * dv + i] = 0x3F80;  // bf16 1.0
      DS_RETURN_IF_ERROR(b.AllocBytes(&b.p_eye, dv * dv * 2));
      DS_CUDA_RETURN_IF_ERROR(cudaMemcpy(b.p_eye, eye.data(), dv * dv * 2, cudaMemcpyHostToDevice));
    }
  }
  if (c.NumSwaLayers() > 0) {
    b.p_swa_scratch_floats = cuda::SwaPrefillScratchFloats(SwaShapeOf(c, layout_.ring_dtype()), Pt);
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_swa_scratch, b.p_swa_scratch_floats));
  }
  std::vector<int32_t> iota(R);
  for (int64_t i = 0; i < R; ++i) iota[i] = static_cast<int32_t>(i);
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpy(b.p_iota, iota.data(), R * 4, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::PrefillPass(std::span<const PrefillPiece> pieces) {
  const ModelConfig& c = config();
  const DeviceWeights& w = *weights_;
  Buffers& b = *buf_;
  const int n = static_cast<int>(pieces.size());
  if (n == 0) return absl::OkStatus();
  const int64_t d = c.n_embd, I = c.intermediate_size, V = c.padded_vocab_size;
  const float eps = static_cast<float>(c.norm_eps);
  const Gdn2Config& gd = c.gdn2;
  const SwaConfig& sw = c.swa;
  const int64_t kd = gd.key_dim(), vd = gd.value_dim(), dv = gd.head_v_dim;
  const auto B16 = cuda::DType::kBF16, F32 = cuda::DType::kF32;
  const size_t pos_off = layout_.position_offset();
  cudaStream_t s = stream_;

  std::vector<int32_t> cu(n + 1, 0), slots(n), toks;
  int max_len = 0;
  for (int i = 0; i < n; ++i) {
    const int len = static_cast<int>(pieces[i].tokens.size());
    cu[i + 1] = cu[i] + len;
    slots[i] = pieces[i].slot;
    max_len = std::max(max_len, len);
    toks.insert(toks.end(), pieces[i].tokens.begin(), pieces[i].tokens.end());
  }
  const int64_t T = cu[n];
  if (T > pass_tokens_ || n > options_.max_rows)
    return absl::InternalError("prefill pass exceeds its buffers");
  const bool bf16_state = layout_.state_dtype() == StateDtype::kBF16;
  const int64_t rec_elems = static_cast<int64_t>(layout_.recurrent_elems());
  if (bf16_state && c.NumGdn2Layers() > 0 && n > b.p_state_slots) {
    DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
    if (b.p_state != nullptr) {
      cudaFree(b.p_state);
      b.allocs.erase(std::find(b.allocs.begin(), b.allocs.end(), b.p_state));
      b.p_state = nullptr;
    }
    b.p_state_slots = n;
    DS_RETURN_IF_ERROR(b.Alloc(&b.p_state, b.p_state_slots * rec_elems));
  }
  if (c.NumGdn2Layers() > 0) {
    const cuda::Gdn2PrefillShape ps{gd.num_heads, gd.num_v_heads, gd.head_k_dim, gd.head_v_dim};
    const int64_t need = cuda::Gdn2ChunkWorkspaceFloats(ps, T, n, options_.prefill_precision);
    if (need > b.p_ws_floats) {
      DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
      cudaFree(b.p_ws);
      b.allocs.erase(std::find(b.allocs.begin(), b.allocs.end(), b.p_ws));
      b.p_ws = nullptr;
      b.p_ws_floats = need;
      DS_RETURN_IF_ERROR(b.Alloc(&b.p_ws, b.p_ws_floats));
    }
  }
  // Positions before this pass (SWA prefill reads them; they advance by each piece's length).
  std::vector<int64_t> pos(n);
  for (int i = 0; i < n; ++i)
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&pos[i], storage_->Address(slots[i], pos_off), 8,
                                            cudaMemcpyDeviceToHost, s));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.p_cu, cu.data(), (n + 1) * 4, cudaMemcpyHostToDevice, s));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.p_slots, slots.data(), n * 4, cudaMemcpyHostToDevice, s));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.p_tokens, toks.data(), T * 4, cudaMemcpyHostToDevice, s));
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));

  const cuda::Gdn2DecodeShape dshape = Gdn2ShapeOf(c);
  const cuda::Gdn2PrefillShape pshape{gd.num_heads, gd.num_v_heads, gd.head_k_dim, gd.head_v_dim};
  const cuda::SwaDecodeShape sshape = SwaShapeOf(c, layout_.ring_dtype());
  const int64_t P = b.proj_cols;

  DS_RETURN_IF_ERROR(cuda::LaunchEmbedding(w.wte(), V, d, b.p_tokens, T, b.p_x, s));
  for (int li = 0; li < c.n_layer; ++li) {
    const DeviceLayerWeights& L = w.layers()[li];
    const LayerStateRegions& reg = layout_.layer(li);
    DS_RETURN_IF_ERROR(cuda::LaunchRmsNormToBf16(b.p_x, d, T, d, L.norm_1, eps, b.p_n, d, s));
    if (L.is_gdn2) {
      const DeviceGdn2Weights& G = L.gdn2;
      const DeviceStateStorage::SegmentView seg = storage_->Segment(reg.gdn2.recurrent);
      DS_RETURN_IF_ERROR(gemm_->Run(T, G.in_rows, d, b.p_n, d, G.in_proj, d, b.p_proj, P, F32, 0.0f, s));
      DS_RETURN_IF_ERROR(LaunchGateUpProjections(T, li, b.p_proj, cuda::DType::kF32, b.p_f0g0,
                                                 b.p_f, b.p_z, false));
      const struct {
        int64_t col, history, channels;
        const float* weight;
        float* y;
      } convs[3] = {{G.col_q, seg.Offset(reg.gdn2.conv_q), kd, G.q_conv, b.p_qc},
                    {G.col_k, seg.Offset(reg.gdn2.conv_k), kd, G.k_conv, b.p_kc},
                    {G.col_v, seg.Offset(reg.gdn2.conv_v), vd, G.v_conv, b.p_vc}};
      for (const auto& cv : convs) {
        cuda::ShortConvPrefillArgs ca;
        ca.num_seqs = n;
        ca.cu_seqlens = b.p_cu;
        ca.max_seq_len = max_len;
        ca.slots = b.p_slots;
        ca.pool = seg.base;
        ca.num_slots = storage_->num_slots();
        ca.slot_stride_bytes = seg.slot_stride;
        ca.history_offset = cv.history;
        ca.channels = static_cast<int>(cv.channels);
        ca.conv_size = gd.conv_size;
        ca.x = b.p_proj + cv.col;
        ca.x_stride = P;
        ca.weight = cv.weight;
        ca.y = cv.y;
        ca.y_stride = cv.channels;
        ca.silu = true;
        DS_RETURN_IF_ERROR(cuda::LaunchShortConvPrefill(ca, s));
      }
      cuda::Gdn2PrefillGatesArgs ga;
      ga.rows = T;
      ga.q = b.p_qc;
      ga.k = b.p_kc;
      ga.f = b.p_f;
      ga.b = b.p_proj + G.col_b;
      ga.w = b.p_proj + G.col_w;
      ga.q_stride = ga.k_stride = ga.f_stride = kd;
      ga.b_stride = ga.w_stride = P;
      ga.a_log = G.a_log;
      ga.dt_bias = G.dt_bias;
      DS_RETURN_IF_ERROR(cuda::LaunchGdn2PrefillGates(dshape, ga, s));
      if (bf16_state) {
        // Widen each piece's state to fp32 (S . I^T with the bf16 identity is exact).
        for (int i = 0; i < n; ++i) {
          DS_RETURN_IF_ERROR(gemm_->Run(int64_t{gd.num_v_heads} * gd.head_k_dim, dv, dv,
                                        storage_->Address(slots[i], reg.gdn2.recurrent), dv,
                                        b.p_eye, dv, b.p_state + i * rec_elems, dv, F32, 0.0f, s));
        }
      }
      cuda::Gdn2PrefillArgs pa;
      pa.num_seqs = n;
      pa.cu_seqlens = b.p_cu;
      pa.max_seq_len = max_len;
      pa.total_tokens = T;
      if (bf16_state) {
        pa.slots = b.p_iota;
        pa.pool = b.p_state;
        pa.num_slots = b.p_state_slots;
        pa.slot_stride_bytes = rec_elems * 4;
        pa.recurrent_offset = 0;
      } else {
        pa.slots = b.p_slots;
        pa.pool = seg.base;
        pa.num_slots = storage_->num_slots();
        pa.slot_stride_bytes = seg.slot_stride;
        pa.recurrent_offset = seg.Offset(reg.gdn2.recurrent);
      }
      pa.state_type = F32;
      pa.q = b.p_qc;
      pa.k = b.p_kc;
      pa.g = b.p_f;
      pa.b = b.p_proj + G.col_b;
      pa.v = b.p_vc;
      pa.w = b.p_proj + G.col_w;
      pa.q_stride = pa.k_stride = pa.g_stride = kd;
      pa.v_stride = vd;
      pa.b_stride = pa.w_stride = P;
      pa.o = b.p_o;
      pa.o_stride = b.o_cols;
      pa.workspace = b.p_ws;
      pa.workspace_floats = b.p_ws_floats;
      pa.precision = options_.prefill_precision;
      DS_RETURN_IF_ERROR(cuda::LaunchGdn2ChunkPrefill(pshape, pa, s));
      if (bf16_state) {
        for (int i = 0; i < n; ++i) {
          DS_RETURN_IF_ERROR(cuda::LaunchCastToBf16(b.p_state + i * rec_elems, rec_elems, 1,
                                                    rec_elems,
                                                    storage_->Address(slots[i], reg.gdn2.recurrent),
                                                    rec_elems, s));
        }
      }
      cuda::Gdn2PrefillOutputArgs oa;
      oa.rows = T;
      oa.o = b.p_o;
      oa.z = b.p_z;
      oa.o_stride = b.o_cols;
      oa.z_stride = vd;
      oa.z_bias = G.g1_bias;
      oa.o_norm = G.o_norm;
      oa.y = b.p_y;
      oa.y_stride = b.y_cols;
      oa.y_type = B16;
      DS_RETURN_IF_ERROR(cuda::LaunchGdn2PrefillOutput(dshape, oa, s));
      DS_RETURN_IF_ERROR(gemm_->Run(T, d, vd, b.p_y, b.y_cols, G.o_proj, vd, b.p_x, d, F32, 1.0f, s));
    } else {
      const int64_t qkv = sw.qkv_rows();
      const int64_t hw = int64_t{sw.n_head} * sw.head_size;
      DS_RETURN_IF_ERROR(gemm_->Run(T, qkv, d, b.p_n, d, L.swa.attn, d, b.p_proj, P, F32, 0.0f, s));
      cuda::SwaPrefillArgs a;
      a.num_seqs = n;
      a.cu_seqlens = b.p_cu;
      a.total_tokens = T;
      a.slots = b.p_slots;
      const DeviceStateStorage::SegmentView tail = storage_->Segment(reg.swa.k_ring);
      a.pool = tail.base;
      a.num_slots = storage_->num_slots();
      a.slot_stride_bytes = tail.slot_stride;
      a.k_ring_offset = tail.Offset(reg.swa.k_ring);
      a.v_ring_offset = tail.Offset(reg.swa.v_ring);
      a.position_offset = tail.Offset(pos_off);
      a.qkv = b.p_proj;
      a.qkv_stride = P;
      a.y = b.p_o;
      a.y_stride = b.o_cols;
      a.scratch = b.p_swa_scratch;
      a.scratch_floats = b.p_swa_scratch_floats;
      DS_RETURN_IF_ERROR(cuda::LaunchSwaPrefill(sshape, a, s));
      DS_RETURN_IF_ERROR(cuda::LaunchCastToBf16(b.p_o, b.o_cols, T, hw, b.p_y, b.y_cols, s));
      DS_RETURN_IF_ERROR(gemm_->Run(T, d, hw, b.p_y, b.y_cols, L.swa.proj, hw, b.p_x, d, F32, 1.0f, s));
    }
    DS_RETURN_IF_ERROR(cuda::LaunchRmsNormToBf16(b.p_x, d, T, d, L.norm_2, eps, b.p_n, d, s));
    DS_RETURN_IF_ERROR(LaunchMlpUp(T, li, b.p_n, b.p_proj, P, b.p_y, b.y_cols));
    DS_RETURN_IF_ERROR(gemm_->Run(T, d, I, b.p_y, b.y_cols, L.w3, I, b.p_x, d, F32, 1.0f, s));
  }
  // SWA layers read the position as "tokens before this pass": advance it by the piece length.
  for (int i = 0; i < n; ++i) {
    pos[i] += cu[i + 1] - cu[i];
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(storage_->Address(slots[i], pos_off), &pos[i], 8,
                                            cudaMemcpyHostToDevice, s));
  }
  // LM head on the last row of each piece that samples, gathered into the decode buffers.
  std::vector<int> logit_rows;
  std::vector<const SequenceStep*> sample_seqs;
  std::vector<SampledToken*> sample_out;
  for (int i = 0; i < n; ++i) {
    if (pieces[i].sample_seq == nullptr) continue;
    const int j = static_cast<int>(logit_rows.size());
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.x + j * d, b.p_x + int64_t{cu[i + 1] - 1} * d, d * 4,
                                            cudaMemcpyDeviceToDevice, s));
    logit_rows.push_back(j);
    sample_seqs.push_back(pieces[i].sample_seq);
    sample_out.push_back(pieces[i].out);
  }
  const int m = static_cast<int>(logit_rows.size());
  if (m > 0) {
    DS_RETURN_IF_ERROR(cuda::LaunchRmsNormToBf16(b.x, d, m, d, w.ln_f(), eps, b.n, d, s));
    DS_RETURN_IF_ERROR(gemm_->Run(m, V, d, b.n, d, w.lm_head(), d, b.logits, V, F32, 0.0f, s));
    DS_RETURN_IF_ERROR(SampleRows(logit_rows, sample_seqs, sample_out));
  }
  // `pos` is the source of pageable copies: keep it alive until they are done.
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s));
  return absl::OkStatus();
}

cuda::Gdn2DecodeArgs::Mode CudaModelRunner::Gdn2Mode(int R) const {
  using K = CudaRunnerOptions::Gdn2Kernel;
  using M = cuda::Gdn2DecodeArgs::Mode;
  switch (options_.gdn2_kernel) {
    case K::kFused: return M::kFused;
    case K::kStreamed: return M::kStreamed;
    case K::kAuto: break;
  }
  // Measured on H200 (bench/NOTES.md, v5): with fp32 state the fused launch wins below 1024
  // (sequence, head) items (25.2 vs 26.2 us at 512; 48.1 vs 47.5 at 1024); with bf16 state
  // streamed wins from 256 items.
  const bool bf16 = layout_.state_dtype() == StateDtype::kBF16;
  return int64_t{R} * config().gdn2.num_v_heads >= (bf16 ? 256 : 1024) ? M::kStreamed
                                                                        : M::kFused;
}

bool CudaModelRunner::UsesGateProductsKernel() const {
  const Gdn2Config& gd = config().gdn2;
  return gd.head_v_dim % 16 == 0 && gd.head_v_dim <= 128 && gd.key_dim() % 64 == 0 &&
         gd.value_dim() % 64 == 0;
}

bool CudaModelRunner::FoldsGateProjections(int R) const {
  const int rank = config().gdn2.head_v_dim;
  const int from = options_.fold_gates_from_rows;
  return from > 0 && R >= from && R <= options_.gemv_max_rows &&
         Gdn2Mode(R) == cuda::Gdn2DecodeArgs::Mode::kFused && rank % 8 == 0 && rank <= 128;
}

absl::Status CudaModelRunner::LaunchGdn2Layer(int R, int li, cuda::DType proj_type,
                                              bool fold_gates) {
  const ModelConfig& c = config();
  Buffers& b = *buf_;
  const Gdn2Config& gd = c.gdn2;
  const DeviceGdn2Weights& G = weights_->layers()[li].gdn2;
  const LayerStateRegions& reg = layout_.layer(li);
  const int64_t kd = gd.key_dim(), vd = gd.value_dim(), P = b.proj_cols;
  const auto B16 = cuda::DType::kBF16, F32 = cuda::DType::kF32;
  cudaStream_t s = stream_;

  const cuda::Gdn2DecodeShape shape = Gdn2ShapeOf(c);
  cuda::Gdn2DecodeArgs a;
  a.batch = R;
  a.slots = b.slots;
  const DeviceStateStorage::SegmentView seg = storage_->Segment(reg.gdn2.recurrent);
  a.pool = seg.base;
  a.num_slots = storage_->num_slots();
  a.slot_stride_bytes = seg.slot_stride;
  a.recurrent_offset = seg.Offset(reg.gdn2.recurrent);
  a.conv_q_offset = seg.Offset(reg.gdn2.conv_q);
  a.conv_k_offset = seg.Offset(reg.gdn2.conv_k);
  a.conv_v_offset = seg.Offset(reg.gdn2.conv_v);
  a.state_type = layout_.state_dtype() == StateDtype::kF32 ? F32 : B16;
  a.q_raw = ProjColumn(b.proj, proj_type, G.col_q);
  a.k_raw = ProjColumn(b.proj, proj_type, G.col_k);
  a.v_raw = ProjColumn(b.proj, proj_type, G.col_v);
  a.b_raw = ProjColumn(b.proj, proj_type, G.col_b);
  a.w_raw = ProjColumn(b.proj, proj_type, G.col_w);
  a.raw_type = proj_type;
  a.q_stride = a.k_stride = a.v_stride = a.b_stride = a.w_stride = P;
  a.f_raw = b.f;
  a.f_stride = kd;
  a.z_raw = b.z;
  a.z_stride = vd;
  a.q_conv_w = G.q_conv;
  a.k_conv_w = G.k_conv;
  a.v_conv_w = G.v_conv;
  a.a_log = G.a_log;
  a.dt_bias = G.dt_bias;
  a.z_bias = G.g1_bias;
  a.o_norm = G.o_norm;
  a.y = b.y;
  a.y_stride = b.y_cols;
  a.y_type = B16;
  a.mode = Gdn2Mode(R);
  if (fold_gates) {
    if (proj_type != F32) return absl::InternalError("gdn2 layer: folded gates need f32 proj");
    // f = F1 bf16(f0), z~ = G1 bf16(g0) inside the launch.
    a.gate_rank = gd.head_v_dim;
    a.f_raw = b.proj + G.col_f0;
    a.z_raw = b.proj + G.col_g0;
    a.f_stride = a.z_stride = P;
    a.f_up = G.f1;
    a.z_up = G.g1;
  }
  // The kernel before this launch forms f and z~ (the gate-products kernel, a GEMM, or the GEMV
  // of both) or, with fold_gates, is the input projection; none writes the slot indices, any
  // state or weights: the state loads may start before it finishes.
  a.overlap_launch = options_.gdn2_overlap_launch && a.mode == cuda::Gdn2DecodeArgs::Mode::kFused;
  a.state_ready = a.overlap_launch;
  a.prep = b.gdn2_prep;
  a.prep_floats = b.gdn2_prep_floats;
  DS_RETURN_IF_ERROR(cuda::LaunchGdn2Decode(shape, a, s));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::LaunchSwaLayer(int R, int li) {
  const ModelConfig& c = config();
  Buffers& b = *buf_;
  const LayerStateRegions& reg = layout_.layer(li);
  cudaStream_t s = stream_;
  const cuda::SwaDecodeShape shape = SwaShapeOf(c, layout_.ring_dtype());
  cuda::SwaDecodeArgs a;
  a.batch = R;
  a.slots = b.slots;
  const DeviceStateStorage::SegmentView tail = storage_->Segment(reg.swa.k_ring);
  a.pool = tail.base;
  a.num_slots = storage_->num_slots();
  a.slot_stride_bytes = tail.slot_stride;
  a.k_ring_offset = tail.Offset(reg.swa.k_ring);
  a.v_ring_offset = tail.Offset(reg.swa.v_ring);
  a.position_offset = tail.Offset(layout_.position_offset());
  a.qkv = b.proj;
  a.qkv_stride = b.proj_cols;
  a.y = b.y;
  a.y_stride = b.y_cols;
  a.y_type = cuda::DType::kBF16;
  a.scratch = b.swa_scratch;
  a.scratch_floats = b.swa_scratch_floats;
  a.counters = b.swa_counters;
  a.num_counters = b.swa_num_counters;
  // The kernel before this launch is the qkv projection, which writes only b.proj.
  a.overlap_launch = true;
  DS_RETURN_IF_ERROR(cuda::LaunchSwaDecode(shape, a, s));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::AdvancePositions(int R) {
  const size_t pos = layout_.position_offset();
  const DeviceStateStorage::SegmentView tail = storage_->Segment(pos);
  return cuda::LaunchAdvancePositions(tail.base, tail.slot_stride, tail.Offset(pos), buf_->slots,
                                      R, stream_);
}

absl::Status CudaModelRunner::ForwardGemv(int R) {
  const ModelConfig& c = config();
  const DeviceWeights& w = *weights_;
  Buffers& b = *buf_;
  const int64_t d = c.n_embd, I = c.intermediate_size, V = c.padded_vocab_size;
  const float eps = static_cast<float>(c.norm_eps);
  const Gdn2Config& gd = c.gdn2;
  const SwaConfig& sw = c.swa;
  const int64_t kd = gd.key_dim(), vd = gd.value_dim(), dv = gd.head_v_dim, P = b.proj_cols;
  cudaStream_t s = stream_;
  using In = cuda::GemvInput;
  using Out = cuda::GemvOutput;
  // One product: out = op(x) . W^T, launched as a programmatic dependent of the kernel before it.
  auto gemv = [&](In in, const float* gamma, const void* x, int64_t ldx, int64_t k, const void* wt,
                  int64_t n, Out out, void* o, int64_t ldo) {
    cuda::GemvArgs g;
    g.rows = R;
    g.k = k;
    g.input = in;
    g.output = out;
    g.gamma = gamma;
    g.eps = eps;
    g.problems[0] = cuda::GemvProblem{x, ldx, wt, k, n, o, ldo};
    g.programmatic = true;
    return cuda::LaunchGemv(g, s);
  };

  DS_RETURN_IF_ERROR(cuda::LaunchEmbedding(w.wte(), V, d, b.tokens, R, b.x, s));
  for (int li = 0; li < c.n_layer; ++li) {
    const DeviceLayerWeights& L = w.layers()[li];
    if (L.is_gdn2) {
      const DeviceGdn2Weights& G = L.gdn2;
      // [q k v b w f0 g0] = RMSNorm_1(x) . in_proj^T
      DS_RETURN_IF_ERROR(gemv(In::kF32RmsNorm, L.norm_1, b.x, d, d, G.in_proj, G.in_rows, Out::kF32,
                              b.proj, P));
      const bool fold = FoldsGateProjections(R);
      if (!fold) {
        // f = F1 bf16(f0), z~ = G1 bf16(g0): one launch.
        cuda::GemvArgs g;
        g.rows = static_cast<int>(R);
        g.k = dv;
        g.input = In::kF32;
        g.output = Out::kF32;
        g.problems[0] = cuda::GemvProblem{b.proj + G.col_f0, P, G.f1, dv, kd, b.f, kd};
        g.problems[1] = cuda::GemvProblem{b.proj + G.col_g0, P, G.g1, dv, vd, b.z, vd};
        g.num_problems = 2;
        g.programmatic = true;
        DS_RETURN_IF_ERROR(cuda::LaunchGemv(g, s));
      }
      DS_RETURN_IF_ERROR(LaunchGdn2Layer(R, li, cuda::DType::kF32, fold));
      DS_RETURN_IF_ERROR(gemv(In::kBf16, nullptr, b.y, b.y_cols, vd, G.o_proj, d,
                              Out::kF32Accumulate, b.x, d));
    } else {
      const int64_t hw = int64_t{sw.n_head} * sw.head_size;
      DS_RETURN_IF_ERROR(gemv(In::kF32RmsNorm, L.norm_1, b.x, d, d, L.swa.attn, sw.qkv_rows(),
                              Out::kF32, b.proj, P));
      DS_RETURN_IF_ERROR(LaunchSwaLayer(R, li));
      DS_RETURN_IF_ERROR(gemv(In::kBf16, nullptr, b.y, b.y_cols, hw, L.swa.proj, d,
                              Out::kF32Accumulate, b.x, d));
    }
    // y = silu(n W1^T) * (n W2^T), n = RMSNorm_2(x);  x += y W3^T
    DS_RETURN_IF_ERROR(gemv(In::kF32RmsNorm, L.norm_2, b.x, d, d, L.w12, I, Out::kSwiGluBf16, b.y,
                            b.y_cols));
    DS_RETURN_IF_ERROR(gemv(In::kBf16, nullptr, b.y, b.y_cols, I, L.w3, d, Out::kF32Accumulate,
                            b.x, d));
  }
  DS_RETURN_IF_ERROR(gemv(In::kF32RmsNorm, w.ln_f(), b.x, d, d, w.lm_head(), V, Out::kF32,
                          b.logits, V));
  // Last, so that the LM head launches as a dependent of the final W3 product.
  DS_RETURN_IF_ERROR(AdvancePositions(R));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::LaunchGateUpProjections(int R, int li, const void* proj,
                                                     cuda::DType proj_type, void* f0g0, float* f,
                                                     float* z, bool programmatic) {
  const Gdn2Config& gd = config().gdn2;
  const DeviceGdn2Weights& G = weights_->layers()[li].gdn2;
  const int64_t kd = gd.key_dim(), vd = gd.value_dim(), dv = gd.head_v_dim;
  const int64_t P = buf_->proj_cols;
  if (UsesGateProductsKernel()) {
    cuda::GateProductsArgs ga;
    ga.rows = R;
    ga.rank = static_cast<int>(dv);
    ga.f0 = ProjColumn(proj, proj_type, G.col_f0);
    ga.g0 = ProjColumn(proj, proj_type, G.col_g0);
    ga.ld_in = P;
    ga.in_type = proj_type;
    ga.f_up = G.f1;
    ga.nf = kd;
    ga.z_up = G.g1;
    ga.nz = vd;
    ga.f = f;
    ga.ld_f = kd;
    ga.z = z;
    ga.ld_z = vd;
    ga.programmatic = programmatic;
    return cuda::LaunchGateProducts(ga, stream_);
  }
  const auto F32 = cuda::DType::kF32;
  if (proj_type != F32) return absl::InternalError("gate up-projections: the fallback needs f32");
  DS_RETURN_IF_ERROR(cuda::LaunchCastToBf16(static_cast<const float*>(proj) + G.col_f0, P, R,
                                            2 * dv, f0g0, 2 * dv, stream_));
  DS_RETURN_IF_ERROR(gemm_->Run(R, kd, dv, f0g0, 2 * dv, G.f1, dv, f, kd, F32, 0.0f, stream_));
  return gemm_->Run(R, vd, dv, static_cast<char*>(f0g0) + dv * 2, 2 * dv, G.g1, dv, z, vd, F32,
                    0.0f, stream_);
}

absl::Status CudaModelRunner::LaunchMlpUp(int64_t rows, int li, const void* n, void* h,
                                          int64_t ldh, void* y, int64_t ldy) {
  const int64_t d = config().n_embd, I = config().intermediate_size;
  const auto BF16 = cuda::DType::kBF16;
  DS_RETURN_IF_ERROR(gemm_->Run(rows, 2 * I, d, n, d, weights_->layers()[li].w12, d, h, ldh, BF16,
                                0.0f, stream_));
  return cuda::LaunchSwiGlu(h, BF16, ldh, rows, I, y, ldy, stream_);
}

absl::Status CudaModelRunner::Forward(int R) {
  if (R <= options_.gemv_max_rows) return ForwardGemv(R);
  const ModelConfig& c = config();
  const DeviceWeights& w = *weights_;
  Buffers& b = *buf_;
  const int64_t d = c.n_embd, I = c.intermediate_size, V = c.padded_vocab_size;
  const float eps = static_cast<float>(c.norm_eps);
  const Gdn2Config& gd = c.gdn2;
  const SwaConfig& sw = c.swa;
  const int64_t vd = gd.value_dim();
  const auto F32 = cuda::DType::kF32;
  cudaStream_t s = stream_;

  DS_RETURN_IF_ERROR(cuda::LaunchEmbedding(w.wte(), V, d, b.tokens, R, b.x, s));
  for (int li = 0; li < c.n_layer; ++li) {
    const DeviceLayerWeights& L = w.layers()[li];
    DS_RETURN_IF_ERROR(cuda::LaunchRmsNormToBf16(b.x, d, R, d, L.norm_1, eps, b.n, d, s));
    if (L.is_gdn2) {
      const DeviceGdn2Weights& G = L.gdn2;
      // The projection's output is an activation, stored bf16 (MODEL_SPEC.md section 7): half
      // the round trip through memory of the f32 one (f32 where the gate-products kernel does
      // not fit the shape: its fallback casts f32).
      const auto pt = UsesGateProductsKernel() ? cuda::DType::kBF16 : F32;
      DS_RETURN_IF_ERROR(
          gemm_->Run(R, G.in_rows, d, b.n, d, G.in_proj, d, b.proj, b.proj_cols, pt, 0.0f, s));
      // f / z~ by the gate-products kernel, a programmatic dependent that triggers its own at
      // once: a fused GDN-2 launch after it starts its state loads early.
      DS_RETURN_IF_ERROR(LaunchGateUpProjections(R, li, b.proj, pt, b.f0g0, b.f, b.z, true));
      DS_RETURN_IF_ERROR(LaunchGdn2Layer(R, li, pt));
      DS_RETURN_IF_ERROR(gemm_->Run(R, d, vd, b.y, b.y_cols, G.o_proj, vd, b.x, d, F32, 1.0f, s));
    } else {
      const int64_t qkv = sw.qkv_rows();
      DS_RETURN_IF_ERROR(gemm_->Run(R, qkv, d, b.n, d, L.swa.attn, d, b.proj, b.proj_cols, F32, 0.0f, s));
      DS_RETURN_IF_ERROR(LaunchSwaLayer(R, li));
      const int64_t hw = int64_t{sw.n_head} * sw.head_size;
      DS_RETURN_IF_ERROR(gemm_->Run(R, d, hw, b.y, b.y_cols, L.swa.proj, hw, b.x, d, F32, 1.0f, s));
    }
    DS_RETURN_IF_ERROR(cuda::LaunchRmsNormToBf16(b.x, d, R, d, L.norm_2, eps, b.n, d, s));
    DS_RETURN_IF_ERROR(LaunchMlpUp(R, li, b.n, b.proj, b.proj_cols, b.y, b.y_cols));
    DS_RETURN_IF_ERROR(gemm_->Run(R, d, I, b.y, b.y_cols, L.w3, I, b.x, d, F32, 1.0f, s));
  }
  DS_RETURN_IF_ERROR(AdvancePositions(R));
  DS_RETURN_IF_ERROR(cuda::LaunchRmsNormToBf16(b.x, d, R, d, w.ln_f(), eps, b.n, d, s));
  DS_RETURN_IF_ERROR(gemm_->Run(R, V, d, b.n, d, w.lm_head(), d, b.logits, V, F32, 0.0f, s));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::RunRows(std::span<const int> slots, std::span<const int32_t> tokens) {
  const int n = static_cast<int>(slots.size());
  if (n == 0) return absl::OkStatus();
  if (n > options_.max_rows)
    return absl::InvalidArgumentError(absl::StrCat(n, " rows exceed max_rows ", options_.max_rows));
  int R = n;
  int graph_size = 0;
  if (options_.use_cuda_graphs) {
    for (int g : options_.graph_batch_sizes) {
      if (g >= n && (graph_size == 0 || g < graph_size)) graph_size = g;
    }
    if (graph_size > 0) R = graph_size;
  }
  h_slots_.assign(R, -1);
  h_tokens_.assign(R, 0);
  for (int i = 0; i < n; ++i) {
    h_slots_[i] = slots[i];
    h_tokens_[i] = tokens[i];
  }
  // Pageable sources: the copies stage them before returning, so the vectors may be reused.
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf_->slots, h_slots_.data(), R * sizeof(int32_t),
                                          cudaMemcpyHostToDevice, stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf_->tokens, h_tokens_.data(), R * sizeof(int32_t),
                                          cudaMemcpyHostToDevice, stream_));
  if (graph_size == 0) return Forward(R);

  auto it = graphs_.find(graph_size);
  if (it == graphs_.end()) {
    // Plan the GEMMs eagerly first (cuBLASLt heuristics run on the host), with all-padding rows
    // so no slot is touched, then capture.
    std::vector<int32_t> pad(R, -1);
    DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf_->slots, pad.data(), R * sizeof(int32_t),
                                            cudaMemcpyHostToDevice, stream_));
    DS_RETURN_IF_ERROR(Forward(R));
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf_->slots, h_slots_.data(), R * sizeof(int32_t),
                                            cudaMemcpyHostToDevice, stream_));
    DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    cudaGraph_t graph;
    DS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    absl::Status fs = Forward(R);
    cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (!fs.ok()) return fs;
    DS_CUDA_RETURN_IF_ERROR(end);
    cudaGraphExec_t exec;
    cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    DS_CUDA_RETURN_IF_ERROR(inst);
    it = graphs_.emplace(graph_size, exec).first;
  }
  DS_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(static_cast<cudaGraphExec_t>(it->second), stream_));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::SampleRows(std::span<const int> logit_rows,
                                         std::span<const SequenceStep* const> seqs,
                                         std::span<SampledToken*> out) {
  const ModelConfig& c = config();
  const int64_t V = c.padded_vocab_size;
  Buffers& b = *buf_;
  std::vector<int32_t> gpu_rows;
  std::vector<cuda::SampleRowParams> params;
  std::vector<cuda::PenaltyRowParams> pparams;
  std::vector<cuda::PenaltyEntry> entries;
  std::vector<size_t> gpu_index;
  std::vector<float> host_row;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SequenceStep& sq = *seqs[i];
    const SamplingParams& sp = *sq.sampling;
    if (sp.top_logprobs > 0) {
      // Host path: the CPU sampler on a copy of this row (penalties included).
      host_row.resize(V);
      DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_row.data(), b.logits + logit_rows[i] * V,
                                              V * sizeof(float), cudaMemcpyDeviceToHost, stream_));
      DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      *out[i] = SampleToken(std::span<float>(host_row), c.vocab_size, sp, sq.sampler_state);
      continue;
    }
    const int j = static_cast<int>(gpu_rows.size());
    gpu_rows.push_back(logit_rows[i]);
    gpu_index.push_back(i);
    cuda::SampleRowParams p;
    p.temperature = sp.temperature;
    p.top_k = sp.top_k;
    p.top_p = sp.top_p;
    p.min_p = sp.min_p;
    const uint64_t counter = sq.sampler_state->rng_counter++;
    p.u = sp.greedy() ? 0.0 : SamplerUniform(sp.seed, counter);
    params.push_back(p);
    pparams.push_back({sp.repetition_penalty, sp.presence_penalty, sp.frequency_penalty});
    const bool rep = sp.repetition_penalty != 1.0f;
    if (rep || sp.presence_penalty != 0.0f || sp.frequency_penalty != 0.0f) {
      std::unordered_map<int32_t, std::pair<uint32_t, uint32_t>> m;
      for (int32_t t : sq.sampler_state->generated_tokens) {
        if (t >= 0 && t < c.vocab_size) ++m[t].first;
      }
      if (rep) {
        for (int32_t t : sq.sampler_state->prompt_tokens) {
          if (t >= 0 && t < c.vocab_size) m[t].second = 1;
        }
      }
      for (const auto& [t, cnt] : m) entries.push_back({j, t, cnt.first, cnt.second});
    }
  }
  const int n = static_cast<int>(gpu_rows.size());
  if (n == 0) return absl::OkStatus();
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.row_index, gpu_rows.data(), n * sizeof(int32_t),
                                          cudaMemcpyHostToDevice, stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.sample_params, params.data(),
                                          n * sizeof(cuda::SampleRowParams),
                                          cudaMemcpyHostToDevice, stream_));
  if (!entries.empty()) {
    if (static_cast<int64_t>(entries.size()) > b.penalty_capacity) {
      DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      if (b.penalties != nullptr) {
        cudaFree(b.penalties);
        b.allocs.erase(std::find(b.allocs.begin(), b.allocs.end(), b.penalties));
      }
      b.penalty_capacity = static_cast<int64_t>(entries.size()) * 2;
      DS_RETURN_IF_ERROR(b.Alloc(&b.penalties, b.penalty_capacity));
    }
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.penalties, entries.data(),
                                            entries.size() * sizeof(cuda::PenaltyEntry),
                                            cudaMemcpyHostToDevice, stream_));
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.penalty_params, pparams.data(),
                                            n * sizeof(cuda::PenaltyRowParams),
                                            cudaMemcpyHostToDevice, stream_));
    DS_RETURN_IF_ERROR(cuda::LaunchApplyPenalties(b.logits, V, b.row_index, b.penalties,
                                                  static_cast<int64_t>(entries.size()),
                                                  b.penalty_params, stream_));
  }
  DS_RETURN_IF_ERROR(cuda::LaunchSample(b.logits, V, b.row_index, n, c.vocab_size,
                                        b.sample_params, b.sample_scratch, b.sampled,
                                        b.sampled_logprob, stream_));
  std::vector<int32_t> tok(n);
  std::vector<float> lp(n);
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tok.data(), b.sampled, n * sizeof(int32_t),
                                          cudaMemcpyDeviceToHost, stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(lp.data(), b.sampled_logprob, n * sizeof(float),
                                          cudaMemcpyDeviceToHost, stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  for (int j = 0; j < n; ++j) {
    SampledToken& o = *out[gpu_index[j]];
    o.token = tok[j];
    const SamplingParams& sp = *seqs[gpu_index[j]]->sampling;
    o.logprob = sp.logprobs ? lp[j] : 0.0f;
    o.top_logprobs.clear();
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::Step(const StepBatch& batch, std::vector<SampledToken>* out) {
  out->clear();
  const int64_t total = batch.num_tokens();
  if (total > options_.max_step_tokens)
    return absl::InvalidArgumentError(absl::StrCat("step carries ", total,
                                                   " tokens, more than max_step_tokens (",
                                                   options_.max_step_tokens, ")"));
  const ModelConfig& c = config();
  std::unordered_set<int> seen;
  int num_sample = 0;
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SequenceStep& s = batch.seqs[i];
    if (s.slot < 0 || s.slot >= storage_->num_slots())
      return absl::OutOfRangeError(absl::StrCat("sequence ", i, ": slot ", s.slot,
                                                " is outside [0, ", storage_->num_slots(), ")"));
    if (!seen.insert(s.slot).second)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": slot ", s.slot,
                                                     " appears twice in one step"));
    if (s.tokens.empty())
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": no tokens to feed"));
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= c.vocab_size)
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": token ", t,
                                                       " is outside [0, ", c.vocab_size, ")"));
    }
    if (s.sample && (s.sampling == nullptr || s.sampler_state == nullptr))
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, ": sample is set without sampling parameters or state"));
    if (s.sample) ++num_sample;
  }
  out->resize(num_sample);
  std::vector<int> out_index(batch.seqs.size(), -1);
  for (size_t i = 0, k = 0; i < batch.seqs.size(); ++i) {
    if (batch.seqs[i].sample) out_index[i] = static_cast<int>(k++);
  }
  // Prompts and prompt chunks (> 1 token) through the chunked path, the rest token-serially.
  std::vector<size_t> serial, chunked;
  for (size_t i = 0; i < batch.seqs.size(); ++i)
    (chunked_ && batch.seqs[i].tokens.size() > 1 ? chunked : serial).push_back(i);
  DS_RETURN_IF_ERROR(SerialSteps(batch, serial, out_index, out));
  std::vector<PrefillPiece> pieces;
  int64_t pass_used = 0;
  for (size_t i : chunked) {
    const SequenceStep& sq = batch.seqs[i];
    size_t done = 0;
    while (done < sq.tokens.size()) {
      if (pass_used == pass_tokens_ || static_cast<int>(pieces.size()) == options_.max_rows) {
        DS_RETURN_IF_ERROR(PrefillPass(pieces));
        pieces.clear();
        pass_used = 0;
      }
      const size_t take =
          std::min<size_t>(sq.tokens.size() - done, static_cast<size_t>(pass_tokens_ - pass_used));
      PrefillPiece pc;
      pc.slot = sq.slot;
      pc.tokens = sq.tokens.subspan(done, take);
      done += take;
      if (sq.sample && done == sq.tokens.size()) {
        pc.sample_seq = &sq;
        pc.out = &(*out)[out_index[i]];
      }
      pieces.push_back(pc);
      pass_used += static_cast<int64_t>(take);
      // A slot may appear only once per pass: a sequence continuing past this piece goes on in
      // the next pass (the loop flushes, since this piece filled the pass).
    }
  }
  DS_RETURN_IF_ERROR(PrefillPass(pieces));
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::SerialSteps(const StepBatch& batch, std::span<const size_t> seqs,
                                          std::span<const int> out_index,
                                          std::vector<SampledToken>* out) {
  // Rows in slot order: with the segment-major pool and lowest-first slots, a full batch then
  // reads each layer's state as one ascending range (bench/NOTES.md, "Slot placement").
  std::vector<size_t> order(seqs.begin(), seqs.end());
  std::sort(order.begin(), order.end(),
            [&](size_t x, size_t y) { return batch.seqs[x].slot < batch.seqs[y].slot; });
  std::vector<int> slots, logit_rows;
  std::vector<int32_t> toks;
  std::vector<const SequenceStep*> sample_seqs;
  std::vector<SampledToken*> sample_out;
  for (size_t g0 = 0; g0 < order.size(); g0 += options_.max_rows) {
    const size_t g1 = std::min(order.size(), g0 + options_.max_rows);
    size_t max_t = 0;
    for (size_t k = g0; k < g1; ++k) max_t = std::max(max_t, batch.seqs[order[k]].tokens.size());
    for (size_t t = 0; t < max_t; ++t) {
      slots.clear();
      toks.clear();
      logit_rows.clear();
      sample_seqs.clear();
      sample_out.clear();
      for (size_t k = g0; k < g1; ++k) {
        const size_t i = order[k];
        const SequenceStep& s = batch.seqs[i];
        if (t >= s.tokens.size()) continue;
        if (s.sample && t + 1 == s.tokens.size()) {
          logit_rows.push_back(static_cast<int>(slots.size()));
          sample_seqs.push_back(&s);
          sample_out.push_back(&(*out)[out_index[i]]);
        }
        slots.push_back(s.slot);
        toks.push_back(s.tokens[t]);
      }
      DS_RETURN_IF_ERROR(RunRows(slots, toks));
      if (!sample_seqs.empty()) DS_RETURN_IF_ERROR(SampleRows(logit_rows, sample_seqs, sample_out));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaModelRunner::DecodePass(std::span<const int> slots,
                                         std::span<const int32_t> tokens) {
  if (slots.size() != tokens.size())
    return absl::InvalidArgumentError("DecodePass: slots and tokens differ in length");
  for (int s : slots) {
    if (s < 0 || s >= storage_->num_slots())
      return absl::OutOfRangeError(absl::StrCat("DecodePass: slot ", s, " out of range"));
  }
  return RunRows(slots, tokens);
}

absl::Status CudaModelRunner::Synchronize() {
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaModelRunner::DecodeForLogits(std::span<const int> slots,
                                              std::span<const int32_t> tokens,
                                              std::vector<float>* logits) {
  DS_RETURN_IF_ERROR(DecodePass(slots, tokens));
  const int64_t V = config().padded_vocab_size;
  logits->resize(slots.size() * V);
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits->data(), buf_->logits,
                                          slots.size() * V * sizeof(float),
                                          cudaMemcpyDeviceToHost, stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace deltaserve
