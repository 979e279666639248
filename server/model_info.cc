// GetModelInfo contents and request limits (see model_info.h).
#include "server/model_info.h"

#include <algorithm>
#include <filesystem>

namespace deltaserve {

RequestLimits MakeRequestLimits(const ModelConfig& model, const Tokenizer& tokenizer,
                                const ServerConfig& config) {
  RequestLimits l;
  l.vocab_size = tokenizer.vocab_size();
  l.bos_id = tokenizer.bos_id();
  l.max_context = model.max_context;
  l.max_prompt_tokens = config.max_prompt_tokens > 0
                            ? std::min<int64_t>(config.max_prompt_tokens, model.max_context - 1)
                            : model.max_context - 1;
  l.max_new_tokens_cap = static_cast<int32_t>(config.engine.max_new_tokens_cap);
  l.default_max_new_tokens = config.default_max_new_tokens;
  return l;
}

v1::ModelInfo MakeModelInfo(const std::string& model_name, const std::string& backend,
                            const ModelConfig& model, const EngineStats& stats,
                            const RequestLimits& limits, int max_waiting) {
  v1::ModelInfo info;
  info.set_model(model_name);
  info.set_backend(backend);
  v1::ModelConfig* c = info.mutable_config();
  c->set_vocab_size(model.vocab_size);
  c->set_padded_vocab_size(model.padded_vocab_size);
  c->set_n_layer(model.n_layer);
  c->set_n_embd(model.n_embd);
  c->set_intermediate_size(model.intermediate_size);
  c->set_num_gdn2_layers(model.NumGdn2Layers());
  c->set_num_swa_layers(model.NumSwaLayers());
  if (model.NumGdn2Layers() > 0) {
    c->set_gdn2_num_heads(model.gdn2.num_heads);
    c->set_gdn2_num_v_heads(model.gdn2.num_v_heads);
    c->set_gdn2_head_k_dim(model.gdn2.head_k_dim);
    c->set_gdn2_head_v_dim(model.gdn2.head_v_dim);
    c->set_gdn2_conv_size(model.gdn2.conv_size);
  }
  if (model.NumSwaLayers() > 0) {
    c->set_swa_n_head(model.swa.n_head);
    c->set_swa_n_query_groups(model.swa.n_query_groups);
    c->set_swa_head_size(model.swa.head_size);
    c->set_swa_local_window(model.swa.local_window);
  }
  c->set_tokenizer(model.tokenizer_type == TokenizerType::kByte ? "byte" : "sentencepiece");
  c->set_bos_token_id(model.bos_token_id);
  c->set_eos_token_id(model.eos_token_id);
  info.set_config_json(model.ToJson());
  info.set_vocab_size(limits.vocab_size);
  info.set_state_bytes_per_slot(static_cast<int64_t>(stats.bytes_per_slot));
  info.set_pool_slots(stats.slots_total);
  info.set_max_waiting_requests(max_waiting);
  info.set_max_context(limits.max_context);
  info.set_max_prompt_tokens(limits.max_prompt_tokens);
  info.set_max_new_tokens_cap(limits.max_new_tokens_cap);
  info.set_default_max_new_tokens(limits.default_max_new_tokens);
  return info;
}

std::string ModelNameFromDir(const std::string& model_dir) {
  std::filesystem::path p(model_dir);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();
  std::string name = p.filename().string();
  return name.empty() || name == "." ? "model" : name;
}

}  // namespace deltaserve
