// Turns a deltaserve.v1 request into an engine GenerationRequest, checking every field first.
// Every error is INVALID_ARGUMENT with a message that starts with the field's path, e.g.
// "sampling.top_p: must be in (0, 1], got 0". Pure functions: no engine, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "deltaserve/v1/deltaserve.pb.h"
#include "engine/request.h"
#include "engine/tokenizer.h"

namespace deltaserve {

// The server's limits, derived from the model and ServerConfig at start-up.
struct RequestLimits {
  int vocab_size = 0;
  int bos_id = -1;
  int64_t max_context = 0;         // prompt + generated tokens of one request
  int64_t max_prompt_tokens = 0;   // < max_context
  int32_t max_new_tokens_cap = 0;
  int32_t default_max_new_tokens = 0;
};

inline constexpr int kMaxRequestIdLength = 128;
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;
inline constexpr int kMaxTopLogprobs = 20;

// Checks a client-supplied request id ("" is allowed: the server assigns one).
absl::Status ValidateRequestId(const std::string& id);

// Builds the engine request: tokenizes a text prompt (prepending BOS as add_bos says), applies
// defaults, and checks everything. `id` is stored as the request's id; `random_seed` is used
// when the request sets no seed. The deadline is left unset.
absl::StatusOr<GenerationRequest> BuildGenerationRequest(const v1::GenerateRequest& request,
                                                         const Tokenizer& tokenizer,
                                                         const RequestLimits& limits,
                                                         const std::string& id,
                                                         uint64_t random_seed);

// Checks token ids against the vocabulary; `field` names them in the error ("token_ids").
absl::Status ValidateTokenIds(const google::protobuf::RepeatedField<int32_t>& ids, int vocab_size,
                              const std::string& field);

}  // namespace deltaserve
