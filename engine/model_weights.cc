// ModelWeights loading and checking (see model_weights.h).
#include "engine/model_weights.h"

#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace deltaserve {
namespace {

// One expected dimension and where its value comes from in config.json.
struct Dim {
  int64_t value;
  const char* source;  // config field expression; "" for a literal
};

struct Expected {
  std::string name;
  std::vector<Dim> dims;
  TensorView* target;
  int layer;  // -1: top level
};

std::string ExpectedShape(const std::vector<Dim>& dims) {
  std::vector<int64_t> v;
  for (const Dim& d : dims) v.push_back(d.value);
  return ShapeString(v);
}

bool HasPrefix(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

// Layer index of a per-layer tensor name ("transformer.h.<i>."), or -1.
int LayerOf(const std::string& name) {
  static const std::string kPrefix = "transformer.h.";
  if (!HasPrefix(name, kPrefix)) return -1;
  size_t i = kPrefix.size();
  int64_t v = 0;
  size_t start = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && v < (1 << 24)) {
    v = v * 10 + (name[i] - '0');
    ++i;
  }
  if (i == start || i >= name.size() || name[i] != '.') return -1;
  return static_cast<int>(v);
}

}  // namespace

std::vector<float> TensorToFloat(const TensorView& t) { return t.ToFloatVector(); }

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::Load(const ModelConfig& config,
                                                                 const std::string& model_dir) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(model_dir + "/model.safetensors");
  if (!file.ok()) return file.status();
  return FromFile(config, *std::move(file));
}

absl::StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::FromFile(
    const ModelConfig& config, std::unique_ptr<SafetensorsFile> file) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  std::unique_ptr<ModelWeights> w(new ModelWeights());
  w->config_ = config;
  w->file_ = std::move(file);
  w->layers_.resize(config.n_layer);

  const Dim d_model{config.n_embd, "n_embd"};
  const Dim vocab{config.padded_vocab_size,
                  "padded_vocab_size (vocab_size rounded up to padding_multiple)"};
  const Dim inter{config.intermediate_size, "intermediate_size"};
  const Gdn2Config& g = config.gdn2;
  const Dim key_dim{g.key_dim(), "gdn2.num_heads * gdn2.head_k_dim"};
  const Dim value_dim{g.value_dim(), "gdn2.num_v_heads * gdn2.head_v_dim"};
  const Dim rank{g.head_v_dim, "gdn2.head_v_dim"};
  const Dim heads{g.num_heads, "gdn2.num_heads"};
  const Dim conv{g.conv_size, "gdn2.conv_size"};
  const Dim one{1, ""};
  const SwaConfig& s = config.swa;
  const Dim qkv{s.qkv_rows(), "(swa.n_head + 2 * swa.n_query_groups) * swa.head_size"};
  const Dim attn_out{static_cast<int64_t>(s.n_head) * s.head_size, "swa.n_head * swa.head_size"};

  std::vector<Expected> want;
  want.push_back({"transformer.wte.weight", {vocab, d_model}, &w->wte_, -1});
  want.push_back({"lm_head.weight", {vocab, d_model}, &w->lm_head_, -1});
  want.push_back({"transformer.ln_f.weight", {d_model}, &w->ln_f_, -1});
  for (int i = 0; i < config.n_layer; ++i) {
    LayerWeights& L = w->layers_[i];
    L.is_gdn2 = config.IsGdn2Layer(i);
    const std::string p = absl::StrCat("transformer.h.", i, ".");
    want.push_back({p + "norm_1.weight", {d_model}, &L.norm_1, i});
    want.push_back({p + "norm_2.weight", {d_model}, &L.norm_2, i});
    want.push_back({p + "mlp.swiglu.w1.weight", {inter, d_model}, &L.w1, i});
    want.push_back({p + "mlp.swiglu.w2.weight", {inter, d_model}, &L.w2, i});
    want.push_back({p + "mlp.swiglu.w3.weight", {d_model, inter}, &L.w3, i});
    const std::string a = p + "attn.";
    if (L.is_gdn2) {
      Gdn2LayerWeights& G = L.gdn2;
      want.push_back({a + "q_proj.weight", {key_dim, d_model}, &G.q_proj, i});
      want.push_back({a + "k_proj.weight", {key_dim, d_model}, &G.k_proj, i});
      want.push_back({a + "v_proj.weight", {value_dim, d_model}, &G.v_proj, i});
      want.push_back({a + "b_proj.weight", {key_dim, d_model}, &G.b_proj, i});
      want.push_back({a + "w_proj.weight", {value_dim, d_model}, &G.w_proj, i});
      want.push_back({a + "q_conv1d.weight", {key_dim, one, conv}, &G.q_conv1d, i});
      want.push_back({a + "k_conv1d.weight", {key_dim, one, conv}, &G.k_conv1d, i});
      want.push_back({a + "v_conv1d.weight", {value_dim, one, conv}, &G.v_conv1d, i});
      want.push_back({a + "f_proj.0.weight", {rank, d_model}, &G.f_proj0, i});
      want.push_back({a + "f_proj.1.weight", {key_dim, rank}, &G.f_proj1, i});
      want.push_back({a + "g_proj.0.weight", {rank, d_model}, &G.g_proj0, i});
      want.push_back({a + "g_proj.1.weight", {value_dim, rank}, &G.g_proj1, i});
      want.push_back({a + "g_proj.1.bias", {value_dim}, &G.g_proj1_bias, i});
      want.push_back({a + "A_log", {heads}, &G.A_log, i});
      want.push_back({a + "dt_bias", {key_dim}, &G.dt_bias, i});
      want.push_back({a + "o_norm.weight", {rank}, &G.o_norm, i});
      want.push_back({a + "o_proj.weight", {d_model, value_dim}, &G.o_proj, i});
    } else {
      want.push_back({a + "attn.weight", {qkv, d_model}, &L.swa.attn, i});
      want.push_back({a + "proj.weight", {d_model, attn_out}, &L.swa.proj, i});
    }
  }

  const SafetensorsFile& f = *w->file_;
  const std::string& path = f.path();
  const std::string mixer_hint =
      absl::StrCat("config.json gdn2_per_layer (", config.gdn2_per_layer,
                   ") decides which layers are GDN-2 and which are SWA; the file disagrees");
  std::set<std::string> expected_names;
  for (const Expected& e : want) expected_names.insert(e.name);

  for (const Expected& e : want) {
    const TensorView* t = f.Find(e.name);
    if (t == nullptr) {
      std::string hint;
      if (e.layer >= 0) {
        // Does this layer hold the other mixer's tensors?
        const std::string other =
            absl::StrCat("transformer.h.", e.layer,
                         w->layers_[e.layer].is_gdn2 ? ".attn.attn.weight" : ".attn.q_proj.weight");
        if (f.Find(other) != nullptr) hint = absl::StrCat(" (", mixer_hint, ")");
        bool any_of_layer = false;
        for (const auto& [name, t] : f.tensors()) any_of_layer |= LayerOf(name) == e.layer;
        if (!any_of_layer) {
          hint = absl::StrCat(" (config.json n_layer is ", config.n_layer,
                              " but the file has no tensors of layer ", e.layer, ")");
        }
      }
      return absl::InvalidArgumentError(absl::StrCat(path, ": missing tensor ", e.name,
                                                     " (expected shape ", ExpectedShape(e.dims),
                                                     ")", hint));
    }
    bool rank_ok = t->shape.size() == e.dims.size();
    for (size_t d = 0; rank_ok && d < e.dims.size(); ++d) {
      if (t->shape[d] == e.dims[d].value) continue;
      std::string msg =
          absl::StrCat(path, ": tensor ", e.name, " has shape ", ShapeString(t->shape),
                       ", expected ", ExpectedShape(e.dims), ": dim ", d);
      if (e.dims[d].source[0] != '\0') {
        absl::StrAppend(&msg, " should be config.json ", e.dims[d].source, " = ", e.dims[d].value,
                        " but is ", t->shape[d]);
      } else {
        absl::StrAppend(&msg, " should be ", e.dims[d].value);
      }
      return absl::InvalidArgumentError(msg);
    }
    if (!rank_ok) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", e.name, " has shape ",
                                                     ShapeString(t->shape), ", expected ",
                                                     ExpectedShape(e.dims)));
    }
    *e.target = *t;
  }
  for (const auto& [name, t] : f.tensors()) {
    if (expected_names.count(name) != 0) continue;
    std::string hint;
    const int layer = LayerOf(name);
    if (layer >= config.n_layer) {
      hint = absl::StrCat(" (config.json n_layer is ", config.n_layer,
                          " but the file has tensors of layer ", layer, ")");
    } else if (layer >= 0 && (name.find(".attn.attn.") != std::string::npos ||
                              name.find(".attn.q_proj.") != std::string::npos)) {
      hint = absl::StrCat(" (", mixer_hint, ")");
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unexpected tensor ", name, " ", ShapeString(t.shape), hint));
  }
  return w;
}

int64_t ModelWeights::NumNonEmbeddingParams() const {
  int64_t n = 0;
  for (const auto& [name, t] : file_->tensors()) {
    if (LayerOf(name) >= 0) n += t.numel();
  }
  return n;
}

int64_t ModelWeights::NumParams() const {
  int64_t n = 0;
  for (const auto& [name, t] : file_->tensors()) n += t.numel();
  return n;
}

}  // namespace deltaserve
