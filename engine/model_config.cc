// ModelConfig parsing, validation and serialisation (schema: model_config.h).
//
// Every error message starts with "config.json: " and names the offending key with its full
// dotted path (e.g. "gdn2.num_v_heads"). Unknown keys are not errors (checkpoints converted from
// training runs carry extra bookkeeping), but they are logged once so typos are visible.
#include "engine/model_config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace deltaserve {
namespace {

using Json = nlohmann::json;

absl::Status ConfigError(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", message));
}

std::string TypeName(const Json& j) { return j.type_name(); }

// Reads optional key `key` of object `obj` into `*out`; `path` is the dotted prefix for errors.
absl::Status ReadInt(const Json& obj, const char* key, const std::string& path, int64_t* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  const std::string name = path + key;
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
    return absl::OkStatus();
  }
  if (it->is_number_float()) {
    double v = it->get<double>();
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e18) {
      *out = static_cast<int64_t>(v);
      return absl::OkStatus();
    }
  }
  return ConfigError(
      absl::StrCat(name, " must be an integer, got ", it->dump(), " (", TypeName(*it), ")"));
}

absl::Status ReadInt32(const Json& obj, const char* key, const std::string& path, int* out) {
  int64_t v = *out;
  if (absl::Status s = ReadInt(obj, key, path, &v); !s.ok()) return s;
  if (v < INT32_MIN || v > INT32_MAX) {
    return ConfigError(absl::StrCat(path, key, " (", v, ") is out of range"));
  }
  *out = static_cast<int>(v);
  return absl::OkStatus();
}

// Like ReadInt32, but JSON null means -1 ("none").
absl::Status ReadOptionalId(const Json& obj, const char* key, int* out) {
  auto it = obj.find(key);
  if (it != obj.end() && it->is_null()) {
    *out = -1;
    return absl::OkStatus();
  }
  return ReadInt32(obj, key, "", out);
}

absl::Status ReadDouble(const Json& obj, const char* key, const std::string& path, double* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_number()) {
    return ConfigError(
        absl::StrCat(path, key, " must be a number, got ", it->dump(), " (", TypeName(*it), ")"));
  }
  *out = it->get<double>();
  if (!std::isfinite(*out)) return ConfigError(absl::StrCat(path, key, " must be finite"));
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& obj, const char* key, const std::string& path, bool* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return ConfigError(absl::StrCat(path, key, " must be true or false, got ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const Json& obj, const char* key, const std::string& path,
                        std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  if (!it->is_string()) {
    return ConfigError(absl::StrCat(path, key, " must be a string, got ", it->dump()));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

void WarnUnknownKeys(const Json& obj, std::initializer_list<std::string_view> known,
                     const std::string& path) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool found = false;
    for (std::string_view k : known) found = found || (it.key() == k);
    if (!found) spdlog::warn("config.json: ignoring unknown key {}{}", path, it.key());
  }
}

#define RETURN_IF_ERROR_CFG(expr)             \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

absl::Status ParseGdn2(const Json& j, Gdn2Config* g) {
  const std::string p = "gdn2.";
  WarnUnknownKeys(j,
                  {"num_heads", "num_v_heads", "head_k_dim", "head_v_dim", "conv_size", "gate_act",
                   "allow_neg_eigval"},
                  p);
  RETURN_IF_ERROR_CFG(ReadInt32(j, "num_heads", p, &g->num_heads));
  g->num_v_heads = g->num_heads;
  RETURN_IF_ERROR_CFG(ReadInt32(j, "num_v_heads", p, &g->num_v_heads));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "head_k_dim", p, &g->head_k_dim));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "head_v_dim", p, &g->head_v_dim));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "conv_size", p, &g->conv_size));
  std::string act = "silu";
  RETURN_IF_ERROR_CFG(ReadString(j, "gate_act", p, &act));
  if (act == "silu") {
    g->gate_act = GateActivation::kSilu;
  } else if (act == "sigmoid") {
    g->gate_act = GateActivation::kSigmoid;
  } else {
    return ConfigError(
        absl::StrCat("gdn2.gate_act must be \"silu\" or \"sigmoid\", got \"", act, "\""));
  }
  RETURN_IF_ERROR_CFG(ReadBool(j, "allow_neg_eigval", p, &g->allow_neg_eigval));
  return absl::OkStatus();
}

absl::Status ParseSwa(const Json& j, SwaConfig* s) {
  const std::string p = "swa.";
  WarnUnknownKeys(
      j,
      {"n_head", "n_query_groups", "head_size", "local_window", "rotary_percentage", "rope_base"},
      p);
  RETURN_IF_ERROR_CFG(ReadInt32(j, "n_head", p, &s->n_head));
  s->n_query_groups = s->n_head;
  RETURN_IF_ERROR_CFG(ReadInt32(j, "n_query_groups", p, &s->n_query_groups));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "head_size", p, &s->head_size));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "local_window", p, &s->local_window));
  RETURN_IF_ERROR_CFG(ReadDouble(j, "rotary_percentage", p, &s->rotary_percentage));
  RETURN_IF_ERROR_CFG(ReadDouble(j, "rope_base", p, &s->rope_base));
  return absl::OkStatus();
}

absl::Status Positive(int64_t v, const std::string& name) {
  if (v < 1) return ConfigError(absl::StrCat(name, " (", v, ") must be >= 1"));
  return absl::OkStatus();
}

}  // namespace

int ModelConfig::NumGdn2Layers() const {
  int n = 0;
  for (int i = 0; i < n_layer; ++i) n += IsGdn2Layer(i) ? 1 : 0;
  return n;
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const std::string& json_text) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    return ConfigError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!j.is_object()) return ConfigError("top level must be a JSON object");

  WarnUnknownKeys(j,
                  {"vocab_size", "padding_multiple", "padded_vocab_size", "n_layer", "n_embd",
                   "intermediate_size", "norm_eps", "gdn2_per_layer", "gdn2", "swa", "bos_token_id",
                   "eos_token_id", "tokenizer", "max_context"},
                  "");
  ModelConfig c;
  RETURN_IF_ERROR_CFG(ReadInt32(j, "vocab_size", "", &c.vocab_size));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "padding_multiple", "", &c.padding_multiple));
  RETURN_IF_ERROR_CFG(Positive(c.vocab_size, "vocab_size"));
  RETURN_IF_ERROR_CFG(Positive(c.padding_multiple, "padding_multiple"));
  const int64_t derived = (static_cast<int64_t>(c.vocab_size) + c.padding_multiple - 1) /
                          c.padding_multiple * c.padding_multiple;
  if (derived > INT32_MAX) return ConfigError("vocab_size is too large");
  c.padded_vocab_size = static_cast<int>(derived);
  RETURN_IF_ERROR_CFG(ReadInt32(j, "padded_vocab_size", "", &c.padded_vocab_size));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "n_layer", "", &c.n_layer));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "n_embd", "", &c.n_embd));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "intermediate_size", "", &c.intermediate_size));
  RETURN_IF_ERROR_CFG(ReadDouble(j, "norm_eps", "", &c.norm_eps));
  RETURN_IF_ERROR_CFG(ReadInt32(j, "gdn2_per_layer", "", &c.gdn2_per_layer));

  const bool any_gdn2 = c.n_layer > 0 && c.NumGdn2Layers() > 0;
  const bool any_swa = c.n_layer > 0 && c.NumGdn2Layers() < c.n_layer;
  if (auto it = j.find("gdn2"); it != j.end()) {
    if (!it->is_object()) return ConfigError("gdn2 must be an object");
    RETURN_IF_ERROR_CFG(ParseGdn2(*it, &c.gdn2));
  } else if (any_gdn2) {
    return ConfigError(absl::StrCat("gdn2 is required: gdn2_per_layer (", c.gdn2_per_layer,
                                    ") makes layer 0 a GDN-2 layer"));
  }
  if (auto it = j.find("swa"); it != j.end()) {
    if (!it->is_object()) return ConfigError("swa must be an object");
    RETURN_IF_ERROR_CFG(ParseSwa(*it, &c.swa));
  } else if (any_swa) {
    return ConfigError(absl::StrCat("swa is required: gdn2_per_layer (", c.gdn2_per_layer,
                                    ") with n_layer (", c.n_layer, ") gives SWA layers"));
  }
  RETURN_IF_ERROR_CFG(ReadOptionalId(j, "bos_token_id", &c.bos_token_id));
  RETURN_IF_ERROR_CFG(ReadOptionalId(j, "eos_token_id", &c.eos_token_id));
  if (auto it = j.find("tokenizer"); it != j.end()) {
    if (!it->is_object()) return ConfigError("tokenizer must be an object");
    WarnUnknownKeys(*it, {"type", "file"}, "tokenizer.");
    std::string type = "sentencepiece";
    RETURN_IF_ERROR_CFG(ReadString(*it, "type", "tokenizer.", &type));
    if (type == "byte") {
      c.tokenizer_type = TokenizerType::kByte;
    } else if (type == "sentencepiece") {
      c.tokenizer_type = TokenizerType::kSentencePiece;
    } else {
      return ConfigError(
          absl::StrCat("tokenizer.type must be \"byte\" or \"sentencepiece\", got \"", type, "\""));
    }
    RETURN_IF_ERROR_CFG(ReadString(*it, "file", "tokenizer.", &c.tokenizer_file));
  }
  RETURN_IF_ERROR_CFG(ReadInt(j, "max_context", "", &c.max_context));
  RETURN_IF_ERROR_CFG(c.Validate());
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::LoadFromDir(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  absl::StatusOr<ModelConfig> c = FromJson(ss.str());
  if (!c.ok()) {
    return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  }
  return c;
}

absl::Status ModelConfig::Validate() const {
  RETURN_IF_ERROR_CFG(Positive(vocab_size, "vocab_size"));
  RETURN_IF_ERROR_CFG(Positive(padding_multiple, "padding_multiple"));
  const int64_t want = (static_cast<int64_t>(vocab_size) + padding_multiple - 1) /
                       padding_multiple * padding_multiple;
  if (padded_vocab_size != want) {
    return ConfigError(absl::StrCat(
        "padded_vocab_size (", padded_vocab_size, ") must equal vocab_size (", vocab_size,
        ") rounded up to padding_multiple (", padding_multiple, "), i.e. ", want));
  }
  RETURN_IF_ERROR_CFG(Positive(n_layer, "n_layer"));
  RETURN_IF_ERROR_CFG(Positive(n_embd, "n_embd"));
  RETURN_IF_ERROR_CFG(Positive(intermediate_size, "intermediate_size"));
  if (!(norm_eps > 0.0) || !std::isfinite(norm_eps)) {
    return ConfigError(absl::StrCat("norm_eps (", norm_eps, ") must be > 0"));
  }
  if (gdn2_per_layer < 0) {
    return ConfigError(absl::StrCat("gdn2_per_layer (", gdn2_per_layer, ") must be >= 0"));
  }
  if (NumGdn2Layers() > 0) {
    const Gdn2Config& g = gdn2;
    RETURN_IF_ERROR_CFG(Positive(g.num_heads, "gdn2.num_heads"));
    RETURN_IF_ERROR_CFG(Positive(g.num_v_heads, "gdn2.num_v_heads"));
    RETURN_IF_ERROR_CFG(Positive(g.head_k_dim, "gdn2.head_k_dim"));
    RETURN_IF_ERROR_CFG(Positive(g.head_v_dim, "gdn2.head_v_dim"));
    RETURN_IF_ERROR_CFG(Positive(g.conv_size, "gdn2.conv_size"));
    if (g.num_v_heads % g.num_heads != 0) {
      return ConfigError(absl::StrCat("gdn2.num_v_heads (", g.num_v_heads,
                                      ") must be a multiple of gdn2.num_heads (", g.num_heads,
                                      ")"));
    }
  }
  if (NumSwaLayers() > 0) {
    const SwaConfig& s = swa;
    RETURN_IF_ERROR_CFG(Positive(s.n_head, "swa.n_head"));
    RETURN_IF_ERROR_CFG(Positive(s.n_query_groups, "swa.n_query_groups"));
    RETURN_IF_ERROR_CFG(Positive(s.head_size, "swa.head_size"));
    RETURN_IF_ERROR_CFG(Positive(s.local_window, "swa.local_window"));
    if (s.n_head % s.n_query_groups != 0) {
      return ConfigError(absl::StrCat("swa.n_head (", s.n_head,
                                      ") must be a multiple of swa.n_query_groups (",
                                      s.n_query_groups, ")"));
    }
    if (!(s.rotary_percentage >= 0.0 && s.rotary_percentage <= 1.0)) {
      return ConfigError(
          absl::StrCat("swa.rotary_percentage (", s.rotary_percentage, ") must be in [0, 1]"));
    }
    if (s.rope_dims() % 2 != 0) {
      return ConfigError(absl::StrCat(
          "swa.rotary_percentage (", s.rotary_percentage, ") * swa.head_size (", s.head_size,
          ") must give an even number of rotary dims, got ", s.rope_dims()));
    }
    if (!(s.rope_base > 0.0)) {
      return ConfigError(absl::StrCat("swa.rope_base (", s.rope_base, ") must be > 0"));
    }
  }
  if (bos_token_id < -1 || bos_token_id >= vocab_size) {
    return ConfigError(absl::StrCat("bos_token_id (", bos_token_id,
                                    ") must be null or in [0, vocab_size (", vocab_size, "))"));
  }
  if (eos_token_id < -1 || eos_token_id >= vocab_size) {
    return ConfigError(absl::StrCat("eos_token_id (", eos_token_id,
                                    ") must be null or in [0, vocab_size (", vocab_size, "))"));
  }
  if (tokenizer_file.empty()) return ConfigError("tokenizer.file must not be empty");
  RETURN_IF_ERROR_CFG(Positive(max_context, "max_context"));
  return absl::OkStatus();
}

std::string ModelConfig::ToJson() const {
  Json j;
  j["vocab_size"] = vocab_size;
  j["padding_multiple"] = padding_multiple;
  j["padded_vocab_size"] = padded_vocab_size;
  j["n_layer"] = n_layer;
  j["n_embd"] = n_embd;
  j["intermediate_size"] = intermediate_size;
  j["norm_eps"] = norm_eps;
  j["gdn2_per_layer"] = gdn2_per_layer;
  j["gdn2"] = {{"num_heads", gdn2.num_heads},
               {"num_v_heads", gdn2.num_v_heads},
               {"head_k_dim", gdn2.head_k_dim},
               {"head_v_dim", gdn2.head_v_dim},
               {"conv_size", gdn2.conv_size},
               {"gate_act", gdn2.gate_act == GateActivation::kSilu ? "silu" : "sigmoid"},
               {"allow_neg_eigval", gdn2.allow_neg_eigval}};
  j["swa"] = {{"n_head", swa.n_head},
              {"n_query_groups", swa.n_query_groups},
              {"head_size", swa.head_size},
              {"local_window", swa.local_window},
              {"rotary_percentage", swa.rotary_percentage},
              {"rope_base", swa.rope_base}};
  j["bos_token_id"] = bos_token_id < 0 ? Json(nullptr) : Json(bos_token_id);
  j["eos_token_id"] = eos_token_id < 0 ? Json(nullptr) : Json(eos_token_id);
  j["tokenizer"] = {{"type", tokenizer_type == TokenizerType::kByte ? "byte" : "sentencepiece"},
                    {"file", tokenizer_file}};
  j["max_context"] = max_context;
  return j.dump(2);
}

}  // namespace deltaserve
