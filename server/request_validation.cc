// Request validation (see request_validation.h). Messages name the field and the allowed range.
#include "server/request_validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace deltaserve {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

absl::Status ValidateSampling(const v1::SamplingParams& in, uint64_t random_seed,
                              SamplingParams* out) {
  if (in.has_temperature()) {
    const float t = in.temperature();
    if (!std::isfinite(t) || t < 0) {
      return Invalid("sampling.temperature", absl::StrCat("must be a finite value >= 0, got ", t));
    }
    out->temperature = t;
  }
  if (in.top_k() < 0) {
    return Invalid("sampling.top_k", absl::StrCat("must be >= 0, got ", in.top_k()));
  }
  out->top_k = in.top_k();
  if (in.has_top_p()) {
    const float p = in.top_p();
    if (!(p > 0 && p <= 1)) return Invalid("sampling.top_p", absl::StrCat("must be in (0, 1], got ", p));
    out->top_p = p;
  }
  if (!(in.min_p() >= 0 && in.min_p() < 1)) {
    return Invalid("sampling.min_p", absl::StrCat("must be in [0, 1), got ", in.min_p()));
  }
  out->min_p = in.min_p();
  if (in.has_repetition_penalty()) {
    const float r = in.repetition_penalty();
    if (!std::isfinite(r) || r <= 0) {
      return Invalid("sampling.repetition_penalty",
                     absl::StrCat("must be a finite value > 0, got ", r));
    }
    out->repetition_penalty = r;
  }
  if (!(in.presence_penalty() >= -2 && in.presence_penalty() <= 2)) {
    return Invalid("sampling.presence_penalty",
                   absl::StrCat("must be in [-2, 2], got ", in.presence_penalty()));
  }
  out->presence_penalty = in.presence_penalty();
  if (!(in.frequency_penalty() >= -2 && in.frequency_penalty() <= 2)) {
    return Invalid("sampling.frequency_penalty",
                   absl::StrCat("must be in [-2, 2], got ", in.frequency_penalty()));
  }
  out->frequency_penalty = in.frequency_penalty();
  if (in.top_logprobs() < 0 || in.top_logprobs() > kMaxTopLogprobs) {
    return Invalid("sampling.top_logprobs",
                   absl::StrCat("must be in [0, ", kMaxTopLogprobs, "], got ", in.top_logprobs()));
  }
  out->top_logprobs = in.top_logprobs();
  out->logprobs = in.logprobs() || in.top_logprobs() > 0;
  out->seed = in.has_seed() ? in.seed() : random_seed;
  return absl::OkStatus();
}

absl::Status ValidateStopping(const v1::StoppingParams& in, const RequestLimits& limits,
                              int64_t prompt_tokens, StoppingParams* out) {
  const int32_t n = in.max_new_tokens();
  if (n < 0) {
    return Invalid("stopping.max_new_tokens", absl::StrCat("must be >= 0 (0: default), got ", n));
  }
  if (n > limits.max_new_tokens_cap) {
    return Invalid("stopping.max_new_tokens",
                   absl::StrCat(n, " exceeds the server's cap of ", limits.max_new_tokens_cap));
  }
  out->max_new_tokens = n == 0 ? limits.default_max_new_tokens : n;
  out->ignore_eos = in.ignore_eos();
  if (in.stop_token_ids_size() > kMaxStopTokenIds) {
    return Invalid("stopping.stop_token_ids",
                   absl::StrCat("at most ", kMaxStopTokenIds, " ids, got ", in.stop_token_ids_size()));
  }
  if (absl::Status s = ValidateTokenIds(in.stop_token_ids(), limits.vocab_size,
                                        "stopping.stop_token_ids");
      !s.ok()) {
    return s;
  }
  out->stop_token_ids.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
  if (in.stop_strings_size() > kMaxStopStrings) {
    return Invalid("stopping.stop_strings",
                   absl::StrCat("at most ", kMaxStopStrings, " strings, got ", in.stop_strings_size()));
  }
  for (int i = 0; i < in.stop_strings_size(); ++i) {
    const std::string& s = in.stop_strings(i);
    const std::string field = absl::StrCat("stopping.stop_strings[", i, "]");
    if (s.empty()) return Invalid(field, "must not be empty");
    if (static_cast<int>(s.size()) > kMaxStopStringBytes) {
      return Invalid(field, absl::StrCat("at most ", kMaxStopStringBytes, " bytes, got ", s.size()));
    }
    out->stop_strings.push_back(s);
  }
  const int64_t total = in.max_total_tokens();
  if (total < 0) {
    return Invalid("stopping.max_total_tokens", absl::StrCat("must be >= 0 (0: the model's context), got ", total));
  }
  if (total > limits.max_context) {
    return Invalid("stopping.max_total_tokens",
                   absl::StrCat(total, " exceeds the model's context limit of ", limits.max_context));
  }
  if (total != 0 && total <= prompt_tokens) {
    return Invalid("stopping.max_total_tokens",
                   absl::StrCat(total, " leaves no room after the prompt's ", prompt_tokens, " tokens"));
  }
  out->max_total_tokens = total;
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequestId(const std::string& id) {
  if (static_cast<int>(id.size()) > kMaxRequestIdLength) {
    return Invalid("request_id",
                   absl::StrCat("at most ", kMaxRequestIdLength, " characters, got ", id.size()));
  }
  for (char c : id) {
    if (!IsIdChar(c)) return Invalid("request_id", "may only contain A-Z a-z 0-9 . _ : -");
  }
  return absl::OkStatus();
}

absl::Status ValidateTokenIds(const google::protobuf::RepeatedField<int32_t>& ids, int vocab_size,
                              const std::string& field) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return Invalid(absl::StrCat(field, "[", i, "]"),
                     absl::StrCat(ids[i], " is not a token id (the vocabulary has ", vocab_size,
                                  " tokens: 0..", vocab_size - 1, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerationRequest> BuildGenerationRequest(const v1::GenerateRequest& request,
                                                         const Tokenizer& tokenizer,
                                                         const RequestLimits& limits,
                                                         const std::string& id,
                                                         uint64_t random_seed) {
  GenerationRequest out;
  out.id = id;
  if (absl::Status s = ValidateRequestId(request.request_id()); !s.ok()) return s;

  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (request.text().empty()) return Invalid("prompt.text", "must not be empty");
      const bool add_bos = request.has_add_bos() ? request.add_bos() : true;
      if (add_bos && limits.bos_id >= 0) out.prompt_tokens.push_back(limits.bos_id);
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(request.text());
      if (!ids.ok()) return Invalid("prompt.text", absl::StrCat("cannot be tokenized: ", ids.status().message()));
      out.prompt_tokens.insert(out.prompt_tokens.end(), ids->begin(), ids->end());
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) return Invalid("prompt.token_ids", "must not be empty");
      if (absl::Status s = ValidateTokenIds(ids, limits.vocab_size, "prompt.token_ids.ids"); !s.ok()) {
        return s;
      }
      const bool add_bos = request.has_add_bos() ? request.add_bos() : false;
      if (add_bos && limits.bos_id >= 0) out.prompt_tokens.push_back(limits.bos_id);
      out.prompt_tokens.insert(out.prompt_tokens.end(), ids.begin(), ids.end());
      break;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "must not be empty (set text or token_ids)");
  }
  const int64_t n = static_cast<int64_t>(out.prompt_tokens.size());
  if (n == 0) return Invalid("prompt", "must not be empty (the text gives no tokens)");
  if (n > limits.max_prompt_tokens) {
    return Invalid("prompt", absl::StrCat(n, " tokens exceed the server's limit of ",
                                          limits.max_prompt_tokens, " prompt tokens"));
  }
  if (absl::Status s = ValidateSampling(request.sampling(), random_seed, &out.sampling); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateStopping(request.stopping(), limits, n, &out.stopping); !s.ok()) {
    return s;
  }
  return out;
}

}  // namespace deltaserve
