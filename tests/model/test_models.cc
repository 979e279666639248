// Test helpers (see test_models.h).
#include "tests/model/test_models.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/bf16.h"
#include "nlohmann/json.hpp"

namespace deltaserve::testing {

std::string SafetensorsBytes(const std::vector<RawTensor>& tensors) {
  nlohmann::ordered_json h;
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (const RawTensor& t : tensors) {
    h[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string header = h.dump();
  while (header.size() % 8 != 0) header.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  for (const RawTensor& t : tensors)
    out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::pair<std::string, std::vector<int64_t>>> TensorShapes(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t d = c.n_embd, V = c.padded_vocab_size, I = c.intermediate_size;
  const int64_t kd = c.gdn2.key_dim(), vd = c.gdn2.value_dim(), r = c.gdn2.head_v_dim;
  out.push_back({"transformer.wte.weight", {V, d}});
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = absl::StrCat("transformer.h.", i, ".");
    out.push_back({p + "norm_1.weight", {d}});
    if (c.IsGdn2Layer(i)) {
      const std::string a = p + "attn.";
      out.push_back({a + "q_proj.weight", {kd, d}});
      out.push_back({a + "k_proj.weight", {kd, d}});
      out.push_back({a + "v_proj.weight", {vd, d}});
      out.push_back({a + "b_proj.weight", {kd, d}});
      out.push_back({a + "w_proj.weight", {vd, d}});
      out.push_back({a + "q_conv1d.weight", {kd, 1, c.gdn2.conv_size}});
      out.push_back({a + "k_conv1d.weight", {kd, 1, c.gdn2.conv_size}});
      out.push_back({a + "v_conv1d.weight", {vd, 1, c.gdn2.conv_size}});
      out.push_back({a + "f_proj.0.weight", {r, d}});
      out.push_back({a + "f_proj.1.weight", {kd, r}});
      out.push_back({a + "g_proj.0.weight", {r, d}});
      out.push_back({a + "g_proj.1.weight", {vd, r}});
      out.push_back({a + "g_proj.1.bias", {vd}});
      out.push_back({a + "A_log", {c.gdn2.num_heads}});
      out.push_back({a + "dt_bias", {kd}});
      out.push_back({a + "o_norm.weight", {r}});
      out.push_back({a + "o_proj.weight", {d, vd}});
    } else {
      out.push_back({p + "attn.attn.weight", {c.swa.qkv_rows(), d}});
      out.push_back(
          {p + "attn.proj.weight", {d, static_cast<int64_t>(c.swa.n_head) * c.swa.head_size}});
    }
    out.push_back({p + "norm_2.weight", {d}});
    out.push_back({p + "mlp.swiglu.w1.weight", {I, d}});
    out.push_back({p + "mlp.swiglu.w2.weight", {I, d}});
    out.push_back({p + "mlp.swiglu.w3.weight", {d, I}});
  }
  out.push_back({"transformer.ln_f.weight", {d}});
  out.push_back({"lm_head.weight", {V, d}});
  return out;
}

namespace {

bool EndsWith(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::vector<float> RandomValues(const ModelConfig& c, const std::string& name,
                                const std::vector<int64_t>& shape, std::mt19937_64& rng) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<float> v(static_cast<size_t>(n));
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  auto fill_normal = [&](double std) {
    for (float& x : v) x = static_cast<float>(normal(rng) * std);
  };
  const double fan_in = shape.size() == 2 ? static_cast<double>(shape[1]) : 1.0;
  if (EndsWith(name, "norm_1.weight") || EndsWith(name, "norm_2.weight") ||
      EndsWith(name, "o_norm.weight") || name == "transformer.ln_f.weight") {
    for (float& x : v) x = static_cast<float>(1.0 + 0.05 * normal(rng));
  } else if (name == "transformer.wte.weight") {
    fill_normal(0.5);
  } else if (name == "lm_head.weight") {
    fill_normal(3.0 / std::sqrt(fan_in));
  } else if (EndsWith(name, "A_log")) {
    for (float& x : v) x = static_cast<float>(std::log(1.0 + 15.0 * uni(rng)));
  } else if (EndsWith(name, "dt_bias")) {
    for (float& x : v) {
      const double dt = std::exp(std::log(1e-3) + uni(rng) * (std::log(0.1) - std::log(1e-3)));
      x = static_cast<float>(dt + std::log(-std::expm1(-dt)));
    }
  } else if (EndsWith(name, "conv1d.weight")) {
    const int64_t W = shape[2];
    fill_normal(0.5 / std::sqrt(static_cast<double>(W)));
    for (int64_t ch = 0; ch < shape[0]; ++ch) v[ch * W + W - 1] += 0.5f;
  } else if (EndsWith(name, "g_proj.1.bias")) {
    fill_normal(0.1);
  } else if (EndsWith(name, "o_proj.weight") || EndsWith(name, "attn.proj.weight") ||
             EndsWith(name, "w3.weight")) {
    fill_normal(1.0 / std::sqrt(2.0 * c.n_layer) / std::sqrt(fan_in));
  } else {
    fill_normal(1.0 / std::sqrt(fan_in));
  }
  return v;
}

}  // namespace

std::vector<RawTensor> RandomTensors(const ModelConfig& c, uint64_t seed,
                                     const std::string& dtype) {
  std::vector<RawTensor> out;
  std::mt19937_64 rng(seed);
  for (const auto& [name, shape] : TensorShapes(c)) {
    std::vector<float> v = RandomValues(c, name, shape, rng);
    RawTensor t{name, dtype, shape, {}};
    if (dtype == "BF16") {
      t.bytes.resize(v.size() * 2);
      cpu::FloatToBf16N(v.data(), t.bytes.data(), static_cast<int64_t>(v.size()));
    } else {
      t.bytes.resize(v.size() * 4);
      std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    }
    out.push_back(std::move(t));
  }
  return out;
}

void WriteModelDir(const std::string& dir, const ModelConfig& c,
                   const std::vector<RawTensor>& tensors) {
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/config.json", c.ToJson());
  WriteFile(dir + "/model.safetensors", SafetensorsBytes(tensors));
}

std::string MakeTempDir(const std::string& name) {
  // Names are unique per test, and ctest runs each test once, so reusing the directory keeps
  // repeated runs from piling up files.
  const std::string dir = absl::StrCat(DELTASERVE_BINARY_DIR, "/tests/model/tmp/", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

ModelConfig SmallPureConfig() {
  ModelConfig c;
  c.vocab_size = 258;
  c.padding_multiple = 64;
  c.padded_vocab_size = 320;
  c.n_layer = 2;
  c.n_embd = 64;
  c.intermediate_size = 160;
  c.gdn2_per_layer = 1;
  c.gdn2.num_heads = 2;
  c.gdn2.num_v_heads = 4;
  c.gdn2.head_k_dim = 16;
  c.gdn2.head_v_dim = 32;
  c.gdn2.conv_size = 4;
  c.bos_token_id = 256;
  c.eos_token_id = 257;
  c.tokenizer_type = TokenizerType::kByte;
  return c;
}

ModelConfig SmallHybridConfig() {
  ModelConfig c = SmallPureConfig();
  c.n_layer = 4;
  c.gdn2_per_layer = 2;
  c.gdn2.num_v_heads = 2;
  c.gdn2.head_v_dim = 16;
  c.gdn2.allow_neg_eigval = true;
  c.gdn2.gate_act = GateActivation::kSigmoid;
  c.swa.n_head = 4;
  c.swa.n_query_groups = 2;
  c.swa.head_size = 16;
  c.swa.local_window = 16;
  c.swa.rotary_percentage = 0.5;
  return c;
}

double RelativeError(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(num / den);
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  return RelativeError(a, std::vector<double>(b.begin(), b.end()));
}

}  // namespace deltaserve::testing
