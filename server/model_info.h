// Builds the GetModelInfo answer and the request limits from a loaded model.
#pragma once

#include <string>

#include "deltaserve/v1/deltaserve.pb.h"
#include "engine/engine.h"
#include "engine/model_config.h"
#include "server/request_validation.h"
#include "server/server_config.h"

namespace deltaserve {

// The limits requests are validated against: vocabulary and BOS from the tokenizer, context
// from the model, caps from the server config (max_prompt_tokens 0 -> max_context - 1).
RequestLimits MakeRequestLimits(const ModelConfig& model, const Tokenizer& tokenizer,
                                const ServerConfig& config);

v1::ModelInfo MakeModelInfo(const std::string& model_name, const std::string& backend,
                            const ModelConfig& model, const EngineStats& stats,
                            const RequestLimits& limits, int max_waiting);

// The name a model directory is known by: its last path component ("models/default/" -> "default").
std::string ModelNameFromDir(const std::string& model_dir);

}  // namespace deltaserve
