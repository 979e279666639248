// DeviceWeights: a GDN-2 / hybrid model's weights in GPU memory, in the layouts the CUDA runner
// uses: matrices bf16 [out, in] (some concatenated so that one product serves several
// projections), small vectors (norm gains, conv taps, gate parameters) fp32.
//
//   GDN-2 layer: in_proj [q; k; v; b; w; f0; g0] rows x n_embd; f1 [key_dim, dv];
//                g1 [value_dim, dv] + g1_bias f32; conv taps f32 [C, W]; A_log f32 [H];
//                dt_bias f32 [key_dim]; o_norm f32 [dv]; o_proj [n_embd, value_dim]
//   SWA layer:   attn [qkv_rows, n_embd]; proj [n_embd, n_head*head_size]
//   MLP:         w12 [w1; w2] = [2*I, n_embd]; w3 [n_embd, I]
//   wte, lm_head [padded_vocab, n_embd]; norms f32 [n_embd]
//
// Thread-safety: immutable after creation; owns its allocations.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"

namespace deltaserve {

struct DeviceGdn2Weights {
  void* in_proj = nullptr;
  int64_t in_rows = 0;
  int64_t col_q = 0, col_k = 0, col_v = 0, col_b = 0, col_w = 0, col_f0 = 0, col_g0 = 0;
  void* f1 = nullptr;
  void* g1 = nullptr;
  float* g1_bias = nullptr;
  float *q_conv = nullptr, *k_conv = nullptr, *v_conv = nullptr;
  float* a_log = nullptr;
  float* dt_bias = nullptr;
  float* o_norm = nullptr;
  void* o_proj = nullptr;
};

struct DeviceSwaWeights {
  void* attn = nullptr;
  void* proj = nullptr;
};

struct DeviceLayerWeights {
  bool is_gdn2 = true;
  float* norm_1 = nullptr;
  float* norm_2 = nullptr;
  void* w12 = nullptr;
  void* w3 = nullptr;
  DeviceGdn2Weights gdn2;
  DeviceSwaWeights swa;
};

class DeviceWeights {
 public:
  // Converts every tensor to the device layout (bf16 matrices, fp32 vectors) and uploads it.
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> Upload(const ModelWeights& weights);
  // Random weights generated on the device (benchmarks: no multi-GB transfer). Deterministic in
  // `seed`; scales keep activations O(1).
  static absl::StatusOr<std::unique_ptr<DeviceWeights>> Random(const ModelConfig& config,
                                                               uint64_t seed);
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  const ModelConfig& config() const { return config_; }
  const std::vector<DeviceLayerWeights>& layers() const { return layers_; }
  void* wte() const { return wte_; }
  void* lm_head() const { return lm_head_; }
  float* ln_f() const { return ln_f_; }
  // Bytes a decode step reads from the weights at least: every matrix once (bf16) except the
  // embedding table, plus the fp32 vectors. For roofline reports.
  int64_t step_read_bytes() const { return step_read_bytes_; }

 private:
  explicit DeviceWeights(const ModelConfig& config) : config_(config) {}
  absl::Status Allocate();
  absl::StatusOr<void*> Alloc(size_t bytes);

  ModelConfig config_;
  std::vector<void*> allocations_;
  std::vector<DeviceLayerWeights> layers_;
  void* wte_ = nullptr;
  void* lm_head_ = nullptr;
  float* ln_f_ = nullptr;
  int64_t step_read_bytes_ = 0;
};

}  // namespace deltaserve
