// EngineConfig::Validate: the limits documented on each field of engine_config.h.
#include "engine/engine_config.h"

#include "absl/strings/str_cat.h"

namespace deltaserve {

absl::Status EngineConfig::Validate() const {
  if (max_waiting < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_waiting must be >= 0, got ", max_waiting));
  }
  if (max_step_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens must be >= 1, got ", max_step_tokens));
  }
  if (prefill_chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill_chunk must be >= 1, got ", prefill_chunk));
  }
  if (max_batch_sequences < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_sequences must be >= 1, got ", max_batch_sequences));
  }
  if (max_new_tokens_cap < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens_cap must be >= 1, got ", max_new_tokens_cap));
  }
  if (preempt_after_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("preempt_after_steps must be >= 1, got ", preempt_after_steps));
  }
  if (max_swapped < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_swapped must be >= 0, got ", max_swapped));
  }
  return absl::OkStatus();
}

}  // namespace deltaserve
