// ModelConfig: everything MODEL_SPEC.md sections 2-4 lets a GDN-2 / KDA / Gated DeltaNet / hybrid
// model vary, parsed from a model directory's config.json and validated once.
//
// config.json schema (keys; defaults are the gdn2_1.3B reference values unless noted):
//   "vocab_size": int (32000)            tokens the tokenizer can produce
//   "padding_multiple": int (64)         padded_vocab_size = round_up(vocab_size, padding_multiple)
//   "padded_vocab_size": int (derived)   rows of wte and lm_head; if given it must match
//   "n_layer": int (18)
//   "n_embd": int (2304)                 d_model
//   "intermediate_size": int (6208)      SwiGLU width
//   "norm_eps": float (1e-5)             every RMSNorm (block, final and output-gate norm)
//   "gdn2_per_layer": int (1)            layer i is GDN-2 iff gdn2_per_layer > 0 && i % it == 0,
//                                        otherwise sliding-window attention (0: all SWA)
//   "gdn2": {                            GDN-2 mixer (required when any layer is GDN-2)
//     "num_heads": int (16)              H, key heads
//     "num_v_heads": int (= num_heads)   HV, value heads; a multiple of H (grouped value heads)
//     "head_k_dim": int (128)            dk
//     "head_v_dim": int (128)            dv; also the rank of the f_proj / g_proj bottlenecks
//     "conv_size": int (4)               W, short-convolution width (>= 1)
//     "gate_act": "silu" | "sigmoid" ("silu")  output-gate activation
//     "allow_neg_eigval": bool (false)   erase gate b in [0,2] instead of [0,1]
//   }
//   "swa": {                             sliding-window attention (required when any layer is SWA)
//     "n_head": int (18), "n_query_groups": int (= n_head), "head_size": int (128),
//     "local_window": int (2048), "rotary_percentage": float (1.0), "rope_base": float (10000)
//   }
//   "bos_token_id": int | null (1), "eos_token_id": int | null (2)
//   "tokenizer": { "type": "byte" | "sentencepiece" ("sentencepiece"), "file": str ("tokenizer.model") }
//   "max_context": int (1048576)         total tokens (prompt + generated) a request may reach
//
// Thread-safety: immutable after Load; share freely.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace deltaserve {

enum class GateActivation { kSilu, kSigmoid };
enum class TokenizerType { kByte, kSentencePiece };

struct Gdn2Config {
  int num_heads = 16;
  int num_v_heads = 16;
  int head_k_dim = 128;
  int head_v_dim = 128;
  int conv_size = 4;
  GateActivation gate_act = GateActivation::kSilu;
  bool allow_neg_eigval = false;

  int key_dim() const { return num_heads * head_k_dim; }
  int value_dim() const { return num_v_heads * head_v_dim; }
  int low_rank_dim() const { return head_v_dim; }
};

struct SwaConfig {
  int n_head = 18;
  int n_query_groups = 18;
  int head_size = 128;
  int local_window = 2048;
  double rotary_percentage = 1.0;
  double rope_base = 10000.0;

  int rope_dims() const { return static_cast<int>(rotary_percentage * head_size); }
  // Rows of the fused attn projection: per query group, (n_head/n_query_groups) q heads, one k, one v.
  int qkv_rows() const { return (n_head + 2 * n_query_groups) * head_size; }
};

struct ModelConfig {
  int vocab_size = 32000;
  int padding_multiple = 64;
  int padded_vocab_size = 32000;
  int n_layer = 18;
  int n_embd = 2304;
  int intermediate_size = 6208;
  double norm_eps = 1e-5;
  int gdn2_per_layer = 1;
  Gdn2Config gdn2;
  SwaConfig swa;
  int bos_token_id = 1;  // -1: none
  int eos_token_id = 2;  // -1: none
  TokenizerType tokenizer_type = TokenizerType::kSentencePiece;
  std::string tokenizer_file = "tokenizer.model";
  int64_t max_context = 1 << 20;

  bool IsGdn2Layer(int layer) const {
    return gdn2_per_layer > 0 && layer % gdn2_per_layer == 0;
  }
  int NumGdn2Layers() const;
  int NumSwaLayers() const { return n_layer - NumGdn2Layers(); }

  // Parses and validates config.json text; errors name the offending key.
  static absl::StatusOr<ModelConfig> FromJson(const std::string& json_text);
  // Reads <dir>/config.json.
  static absl::StatusOr<ModelConfig> LoadFromDir(const std::string& model_dir);
  // Checks internal consistency (positive sizes, divisibility, padded vocab).
  absl::Status Validate() const;
  std::string ToJson() const;
};

}  // namespace deltaserve
