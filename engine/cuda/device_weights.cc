// DeviceWeights implementation (see device_weights.h).
#include "engine/cuda/device_weights.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve {
namespace {

uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

absl::Status CopyBf16(void* dst, const std::vector<float>& src) {
  std::vector<uint16_t> h(src.size());
  for (size_t i = 0; i < src.size(); ++i) h[i] = ToBf16(src[i]);
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::Status CopyF32(void* dst, const std::vector<float>& src) {
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src.data(), src.size() * 4, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

}  // namespace

DeviceWeights::~DeviceWeights() {
  for (void* p : allocations_) cudaFree(p);
}

absl::StatusOr<void*> DeviceWeights::Alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes of GPU memory for weights"));
  }
  allocations_.push_back(p);
  return p;
}

absl::Status DeviceWeights::Allocate() {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd, I = c.intermediate_size, V = c.padded_vocab_size;
  const Gdn2Config& g = c.gdn2;
  const int64_t kd = g.key_dim(), vd = g.value_dim(), dv = g.head_v_dim, W = g.conv_size;
  int64_t bytes = 0;
#define DS_ALLOC(dst, type, n)                                     \
  do {                                                             \
    absl::StatusOr<void*> p_ = Alloc(static_cast<size_t>(n) * sizeof(type)); \
    if (!p_.ok()) return p_.status();                              \
    dst = static_cast<decltype(dst)>(*p_);                         \
    bytes += static_cast<int64_t>(n) * sizeof(type);               \
  } while (0)
  DS_ALLOC(wte_, uint16_t, V * d);
  bytes -= V * d * 2;  // a step reads only the rows of its tokens
  DS_ALLOC(lm_head_, uint16_t, V * d);
  DS_ALLOC(ln_f_, float, d);
  layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    DeviceLayerWeights& L = layers_[i];
    L.is_gdn2 = c.IsGdn2Layer(i);
    DS_ALLOC(L.norm_1, float, d);
    DS_ALLOC(L.norm_2, float, d);
    DS_ALLOC(L.w12, uint16_t, 2 * I * d);
    DS_ALLOC(L.w3, uint16_t, d * I);
    if (L.is_gdn2) {
      DeviceGdn2Weights& G = L.gdn2;
      G.col_q = 0;
      G.col_k = kd;
      G.col_v = 2 * kd;
      G.col_b = 2 * kd + vd;
      G.col_w = 3 * kd + vd;
      G.col_f0 = 3 * kd + 2 * vd;
      G.col_g0 = G.col_f0 + dv;
      G.in_rows = G.col_g0 + dv;
      DS_ALLOC(G.in_proj, uint16_t, G.in_rows * d);
      DS_ALLOC(G.f1, uint16_t, kd * dv);
      DS_ALLOC(G.g1, uint16_t, vd * dv);
      DS_ALLOC(G.g1_bias, float, vd);
      DS_ALLOC(G.q_conv, float, kd * W);
      DS_ALLOC(G.k_conv, float, kd * W);
      DS_ALLOC(G.v_conv, float, vd * W);
      DS_ALLOC(G.a_log, float, g.num_heads);
      DS_ALLOC(G.dt_bias, float, kd);
      DS_ALLOC(G.o_norm, float, dv);
      DS_ALLOC(G.o_proj, uint16_t, d * vd);
    } else {
      const SwaConfig& s = c.swa;
      DS_ALLOC(L.swa.attn, uint16_t, s.qkv_rows() * d);
      DS_ALLOC(L.swa.proj, uint16_t, d * int64_t{s.n_head} * s.head_size);
    }
  }
#undef DS_ALLOC
  step_read_bytes_ = bytes;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::Upload(const ModelWeights& w) {
  std::unique_ptr<DeviceWeights> dw(new DeviceWeights(w.config()));
  if (absl::Status s = dw->Allocate(); !s.ok()) return s;
  const ModelConfig& c = w.config();
  auto bf16 = [](void* dst, const TensorView& t) { return CopyBf16(dst, t.ToFloatVector()); };
  auto f32 = [](void* dst, const TensorView& t) { return CopyF32(dst, t.ToFloatVector()); };
  auto stack = [](void* dst, std::initializer_list<const TensorView*> parts) {
    std::vector<float> all;
    for (const TensorView* t : parts) {
      std::vector<float> v = t->ToFloatVector();
      all.insert(all.end(), v.begin(), v.end());
    }
    return CopyBf16(dst, all);
  };
#define DS_TRY(expr)                   \
  do {                                 \
    absl::Status s_ = (expr);          \
    if (!s_.ok()) return s_;           \
  } while (0)
  DS_TRY(bf16(dw->wte_, w.wte()));
  DS_TRY(bf16(dw->lm_head_, w.lm_head()));
  DS_TRY(f32(dw->ln_f_, w.ln_f()));
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerWeights& src = w.layers()[i];
    DeviceLayerWeights& L = dw->layers_[i];
    DS_TRY(f32(L.norm_1, src.norm_1));
    DS_TRY(f32(L.norm_2, src.norm_2));
    DS_TRY(stack(L.w12, {&src.w1, &src.w2}));
    DS_TRY(bf16(L.w3, src.w3));
    if (L.is_gdn2) {
      const Gdn2LayerWeights& s = src.gdn2;
      DeviceGdn2Weights& G = L.gdn2;
      DS_TRY(stack(G.in_proj, {&s.q_proj, &s.k_proj, &s.v_proj, &s.b_proj, &s.w_proj, &s.f_proj0,
                               &s.g_proj0}));
      DS_TRY(bf16(G.f1, s.f_proj1));
      DS_TRY(bf16(G.g1, s.g_proj1));
      DS_TRY(f32(G.g1_bias, s.g_proj1_bias));
      DS_TRY(f32(G.q_conv, s.q_conv1d));  // [C, 1, W] == [C, W]
      DS_TRY(f32(G.k_conv, s.k_conv1d));
      DS_TRY(f32(G.v_conv, s.v_conv1d));
      DS_TRY(f32(G.a_log, s.A_log));
      DS_TRY(f32(G.dt_bias, s.dt_bias));
      DS_TRY(f32(G.o_norm, s.o_norm));
      DS_TRY(bf16(G.o_proj, s.o_proj));
    } else {
      DS_TRY(bf16(L.swa.attn, src.swa.attn));
      DS_TRY(bf16(L.swa.proj, src.swa.proj));
    }
  }
#undef DS_TRY
  return dw;
}

absl::StatusOr<std::unique_ptr<DeviceWeights>> DeviceWeights::Random(const ModelConfig& config,
                                                                     uint64_t seed) {
  std::unique_ptr<DeviceWeights> dw(new DeviceWeights(config));
  if (absl::Status s = dw->Allocate(); !s.ok()) return s;
  const ModelConfig& c = config;
  const int64_t d = c.n_embd, I = c.intermediate_size, V = c.padded_vocab_size;
  const Gdn2Config& g = c.gdn2;
  const int64_t kd = g.key_dim(), vd = g.value_dim(), dv = g.head_v_dim, W = g.conv_size;
  uint64_t n = 0;
  auto fill = [&](void* p, cuda::DType t, int64_t count, float scale, float offset) {
    return cuda::LaunchFillRandom(p, t, count, seed * 1000003u + (++n), scale, offset, nullptr);
  };
  const auto B = cuda::DType::kBF16, F = cuda::DType::kF32;
  auto lin = [](int64_t fan_in) { return static_cast<float>(std::sqrt(3.0 / fan_in)); };
#define DS_TRY(expr)                   \
  do {                                 \
    absl::Status s_ = (expr);          \
    if (!s_.ok()) return s_;           \
  } while (0)
  DS_TRY(fill(dw->wte_, B, V * d, 1.0f, 0.0f));
  DS_TRY(fill(dw->lm_head_, B, V * d, lin(d), 0.0f));
  DS_TRY(fill(dw->ln_f_, F, d, 0.1f, 1.0f));
  for (int i = 0; i < c.n_layer; ++i) {
    DeviceLayerWeights& L = dw->layers_[i];
    DS_TRY(fill(L.norm_1, F, d, 0.1f, 1.0f));
    DS_TRY(fill(L.norm_2, F, d, 0.1f, 1.0f));
    DS_TRY(fill(L.w12, B, 2 * I * d, lin(d), 0.0f));
    DS_TRY(fill(L.w3, B, d * I, lin(I) * 0.3f, 0.0f));
    if (L.is_gdn2) {
      DeviceGdn2Weights& G = L.gdn2;
      DS_TRY(fill(G.in_proj, B, G.in_rows * d, lin(d), 0.0f));
      DS_TRY(fill(G.f1, B, kd * dv, lin(dv), 0.0f));
      DS_TRY(fill(G.g1, B, vd * dv, lin(dv), 0.0f));
      DS_TRY(fill(G.g1_bias, F, vd, 0.1f, 0.0f));
      DS_TRY(fill(G.q_conv, F, kd * W, 0.5f, 0.0f));
      DS_TRY(fill(G.k_conv, F, kd * W, 0.5f, 0.0f));
      DS_TRY(fill(G.v_conv, F, vd * W, 0.5f, 0.0f));
      DS_TRY(fill(G.a_log, F, g.num_heads, 0.5f, 0.0f));
      DS_TRY(fill(G.dt_bias, F, kd, 0.5f, 0.0f));
      DS_TRY(fill(G.o_norm, F, dv, 0.1f, 1.0f));
      DS_TRY(fill(G.o_proj, B, d * vd, lin(vd) * 0.3f, 0.0f));
    } else {
      const SwaConfig& s = c.swa;
      DS_TRY(fill(L.swa.attn, B, s.qkv_rows() * d, lin(d), 0.0f));
      DS_TRY(fill(L.swa.proj, B, d * int64_t{s.n_head} * s.head_size,
                  lin(int64_t{s.n_head} * s.head_size) * 0.3f, 0.0f));
    }
  }
#undef DS_TRY
  DS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return dw;
}

}  // namespace deltaserve
