// ModelWeights: the tensors of a GDN-2 checkpoint (MODEL_SPEC.md section 5), checked against a
// ModelConfig and exposed as backend-neutral views (dtype, shape, pointer into the memory-mapped
// safetensors file). Backends make their own copies: the CPU model fp32 (TensorToFloat), the
// CUDA runner bf16 device buffers.
//
// Load checks that every tensor the config implies is present with exactly the expected shape,
// and that no other tensor is in the file. Errors name the tensor, the expected and the actual
// shape, and the config field(s) the mismatching dimension comes from (a file that does not fit
// its config.json names the field).
//
// Thread-safety: immutable after Load; views are valid while the ModelWeights object lives.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace deltaserve {

// GDN-2 mixer weights (prefix transformer.h.{i}.attn.).
struct Gdn2LayerWeights {
  TensorView q_proj, k_proj, v_proj, b_proj, w_proj;  // [key_dim|value_dim, n_embd]
  TensorView q_conv1d, k_conv1d, v_conv1d;            // [C, 1, conv_size]
  TensorView f_proj0, f_proj1;                        // [dv, n_embd], [key_dim, dv]
  TensorView g_proj0, g_proj1, g_proj1_bias;          // [dv, n_embd], [value_dim, dv], [value_dim]
  TensorView A_log;                                   // [num_heads]
  TensorView dt_bias;                                 // [key_dim]
  TensorView o_norm;                                  // [dv]
  TensorView o_proj;                                  // [n_embd, value_dim]
};

// Sliding-window attention weights (prefix transformer.h.{i}.attn.).
struct SwaLayerWeights {
  TensorView attn;  // [qkv_rows, n_embd]
  TensorView proj;  // [n_embd, n_head * head_size]
};

struct LayerWeights {
  bool is_gdn2 = true;
  TensorView norm_1, norm_2;  // [n_embd]
  TensorView w1, w2, w3;      // [I, n_embd], [I, n_embd], [n_embd, I]
  Gdn2LayerWeights gdn2;      // when is_gdn2
  SwaLayerWeights swa;        // otherwise
};

class ModelWeights {
 public:
  // Opens <model_dir>/model.safetensors.
  static absl::StatusOr<std::unique_ptr<ModelWeights>> Load(const ModelConfig& config,
                                                            const std::string& model_dir);
  static absl::StatusOr<std::unique_ptr<ModelWeights>> FromFile(
      const ModelConfig& config, std::unique_ptr<SafetensorsFile> file);

  const ModelConfig& config() const { return config_; }
  const TensorView& wte() const { return wte_; }          // [padded_vocab, n_embd]
  const TensorView& lm_head() const { return lm_head_; }  // [padded_vocab, n_embd]
  const TensorView& ln_f() const { return ln_f_; }        // [n_embd]
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const SafetensorsFile& file() const { return *file_; }

  // Parameters of the per-layer tensors (everything except wte, lm_head and ln_f).
  int64_t NumNonEmbeddingParams() const;
  int64_t NumParams() const;

 private:
  ModelWeights() = default;

  ModelConfig config_;
  std::unique_ptr<SafetensorsFile> file_;
  TensorView wte_, lm_head_, ln_f_;
  std::vector<LayerWeights> layers_;
};

// An fp32 copy of a tensor (converted from BF16/F16 as needed).
std::vector<float> TensorToFloat(const TensorView& t);

}  // namespace deltaserve
