// SamplingParams::Validate: the ranges documented in sampling_params.h. Errors name the field.
#include "engine/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace deltaserve {
namespace {

absl::Status OutOfRange(const char* field, double value, const char* range) {
  return absl::InvalidArgumentError(
      absl::StrCat("sampling.", field, " must be in ", range, ", got ", value));
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return OutOfRange("temperature", temperature, "[0, inf)");
  }
  if (top_k < 0) return OutOfRange("top_k", top_k, "[0, inf)");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return OutOfRange("top_p", top_p, "(0, 1]");
  if (!(min_p >= 0.0f && min_p < 1.0f)) return OutOfRange("min_p", min_p, "[0, 1)");
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return OutOfRange("repetition_penalty", repetition_penalty, "(0, inf)");
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return OutOfRange("presence_penalty", presence_penalty, "[-2, 2]");
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return OutOfRange("frequency_penalty", frequency_penalty, "[-2, 2]");
  }
  if (top_logprobs < 0 || top_logprobs > 20) {
    return OutOfRange("top_logprobs", top_logprobs, "[0, 20]");
  }
  return absl::OkStatus();
}

}  // namespace deltaserve
