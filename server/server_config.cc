// ServerConfig::Validate: range checks with messages that name the offending flag.
#include "server/server_config.h"

#include "absl/strings/str_cat.h"

namespace deltaserve {
namespace {

absl::Status Bad(const char* flag, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", what));
}

}  // namespace

absl::Status ServerConfig::Validate() const {
  if (model_dir.empty()) return Bad("model", "is required (a model directory)");
  if (backend != "cpu" && backend != "cuda") {
    return Bad("backend", absl::StrCat("must be cpu or cuda, got \"", backend, "\""));
  }
  if (state_dtype != "f32" && state_dtype != "bf16") {
    return Bad("state-dtype", absl::StrCat("must be f32 or bf16, got \"", state_dtype, "\""));
  }
  if (ring_dtype != "state" && ring_dtype != "f32" && ring_dtype != "bf16") {
    return Bad("ring-dtype",
               absl::StrCat("must be state, f32 or bf16, got \"", ring_dtype, "\""));
  }
  if (prefill_precision != "fp32" && prefill_precision != "tf32" && prefill_precision != "bf16") {
    return Bad("prefill-precision",
               absl::StrCat("must be fp32, tf32 or bf16, got \"", prefill_precision, "\""));
  }
  if (cpu_threads < 0) return Bad("threads", absl::StrCat("must be >= 0, got ", cpu_threads));
  if (device < 0) return Bad("device", absl::StrCat("must be >= 0, got ", device));
  if (host.empty()) return Bad("host", "must not be empty");
  if (port < 0 || port > 65535) return Bad("port", absl::StrCat("must be in 0..65535, got ", port));
  if (metrics_port < 1 || metrics_port > 65535) {
    return Bad("metrics-port", absl::StrCat("must be in 1..65535, got ", metrics_port));
  }
  if (metrics_port == port) {
    return Bad("metrics-port", absl::StrCat("must differ from --port (both ", port, ")"));
  }
  if (pool_budget_bytes <= 0) {
    return Bad("pool-budget", absl::StrCat("must be > 0 bytes, got ", pool_budget_bytes));
  }
  if (pool_slots < 0) return Bad("pool-slots", absl::StrCat("must be >= 0, got ", pool_slots));
  if (engine.max_waiting < 0) {
    return Bad("queue-limit", absl::StrCat("must be >= 0, got ", engine.max_waiting));
  }
  if (engine.max_step_tokens < 1) {
    return Bad("token-budget", absl::StrCat("must be >= 1, got ", engine.max_step_tokens));
  }
  if (engine.prefill_chunk < 1) {
    return Bad("prefill-chunk", absl::StrCat("must be >= 1, got ", engine.prefill_chunk));
  }
  if (engine.prefill_chunk > engine.max_step_tokens) {
    return Bad("prefill-chunk", absl::StrCat("must be <= --token-budget (", engine.max_step_tokens,
                                             "), got ", engine.prefill_chunk));
  }
  if (engine.max_batch_sequences < 1) {
    return Bad("max-batch", absl::StrCat("must be >= 1, got ", engine.max_batch_sequences));
  }
  if (engine.preempt_after_steps < 1) {
    return Bad("preempt-after-steps",
               absl::StrCat("must be >= 1, got ", engine.preempt_after_steps));
  }
  if (engine.max_swapped < 0) {
    return Bad("max-swapped", absl::StrCat("must be >= 0, got ", engine.max_swapped));
  }
  if (engine.max_new_tokens_cap < 1 || engine.max_new_tokens_cap > (int64_t{1} << 30)) {
    return Bad("max-new-tokens-cap",
               absl::StrCat("must be in 1..2^30, got ", engine.max_new_tokens_cap));
  }
  if (max_prompt_tokens < 0) {
    return Bad("max-prompt-tokens", absl::StrCat("must be >= 0, got ", max_prompt_tokens));
  }
  if (default_max_new_tokens < 1 || default_max_new_tokens > engine.max_new_tokens_cap) {
    return Bad("default-max-new-tokens",
               absl::StrCat("must be in 1..", engine.max_new_tokens_cap,
                            " (--max-new-tokens-cap), got ", default_max_new_tokens));
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return Bad(tls_cert_file.empty() ? "tls-cert" : "tls-key",
               "--tls-cert and --tls-key must be given together");
  }
  if (max_message_bytes < 1024 || max_message_bytes > (int64_t{1} << 30)) {
    return Bad("max-message-bytes",
               absl::StrCat("must be in 1024..1073741824, got ", max_message_bytes));
  }
  if (grpc_threads < 4 || grpc_threads > 65536) {
    return Bad("grpc-threads", absl::StrCat("must be in 4..65536, got ", grpc_threads));
  }
  if (!(drain_grace_seconds >= 0) || drain_grace_seconds > 86400) {
    return Bad("drain-grace", absl::StrCat("must be in 0..86400 seconds, got ", drain_grace_seconds));
  }
  if (log_level != "trace" && log_level != "debug" && log_level != "info" && log_level != "warn" &&
      log_level != "error") {
    return Bad("log-level",
               absl::StrCat("must be trace, debug, info, warn or error, got \"", log_level, "\""));
  }
  return absl::OkStatus();
}

}  // namespace deltaserve
