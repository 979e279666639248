// ServerConfig: every setting of `deltaserve serve`, filled from flags (server/serve_flags.h) and
// validated once at start-up. Each field documents its flag, default and constraints.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/engine_config.h"

namespace deltaserve {

enum class LogFormat { kText, kJson };

struct ServerConfig {
  // --model: directory holding config.json, the weights and the tokenizer. Required.
  std::string model_dir;
  // --backend: "cpu" or "cuda". Default "cpu".
  std::string backend = "cpu";
  // --host: address both listeners bind to. Default "0.0.0.0" (all interfaces).
  std::string host = "0.0.0.0";
  // --port: gRPC port, 0..65535; 0 picks a free port (printed at start). Default 50051.
  int port = 50051;
  // --metrics-port: Prometheus endpoint port (/metrics), 1..65535, different from --port.
  // Default 9400.
  int metrics_port = 9400;

  // --state-dtype: storage of the recurrent states, "f32" or "bf16". Default f32.
  std::string state_dtype = "f32";
  // --ring-dtype: storage of the SWA rings of hybrid models, "f32", "bf16" or "state" (as
  // --state-dtype). bf16 rings halve most of a hybrid slot, each key and value rounded once.
  // Default state.
  std::string ring_dtype = "state";
  // --prefill-precision: products of the CUDA backend's chunked GDN-2 prefill, "fp32" (3xTF32,
  // fp32-level), "tf32" (single TF32 products: under 1e-3 relative on the recurrence outputs,
  // faster on long prompts) or "bf16" (bf16 products: a few 1e-3 relative, the fastest). The CPU
  // backend ignores it. Default fp32.
  std::string prefill_precision = "fp32";
  // --threads: CPU backend threads, >= 0; 0 means all hardware threads. Default 0.
  int cpu_threads = 0;
  // --device: CUDA device ordinal, >= 0. Default 0.
  int device = 0;
  // --pool-budget: bytes of memory for the state-slot pool (suffixes K, M, G, Ki, Mi, Gi).
  // > 0; the pool gets floor(budget / slot bytes) slots, which must be at least one (checked
  // when the model is loaded). Default 1 GiB. Ignored when pool_slots > 0.
  int64_t pool_budget_bytes = int64_t{1} << 30;
  // --pool-slots: exact number of state slots, >= 0; 0 sizes the pool by --pool-budget. Default 0.
  int pool_slots = 0;
  // Engine knobs: --queue-limit (max_waiting), --token-budget (max_step_tokens),
  // --prefill-chunk, --max-batch (max_batch_sequences), --swap (enable_swap) and
  // --max-new-tokens-cap (max_new_tokens_cap). Defaults and limits: engine/engine_config.h,
  // except max_new_tokens_cap, whose server default is 4096.
  EngineConfig engine = DefaultEngineConfig();

  // --max-prompt-tokens: most prompt tokens (after tokenization and BOS) a request may carry,
  // >= 0; 0 means the model's max_context - 1. Default 0.
  int64_t max_prompt_tokens = 0;
  // --default-max-new-tokens: max_new_tokens of a request that sets none, 1..max_new_tokens_cap.
  // Default 256, or max_new_tokens_cap when that is lower and the flag is not given.
  int32_t default_max_new_tokens = 256;

  // --api-key-file: file with one accepted API key per line (blank lines and lines starting
  // with '#' ignored). When set, every DeltaServe call must carry metadata
  // `authorization: Bearer <key>`; health and reflection stay open. Default: no authentication.
  std::string api_key_file;
  // --tls-cert / --tls-key: PEM certificate chain and private key; both or neither. When set,
  // the gRPC port serves TLS only. Default: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // --max-message-bytes: largest request or response message, 1 KiB..1 GiB. Default 4 MiB.
  int64_t max_message_bytes = int64_t{4} << 20;
  // --grpc-threads: most threads serving calls (each running Generate stream holds one),
  // 4..65536. Default 1024.
  int grpc_threads = 1024;
  // --drain-grace: seconds that in-flight requests get to finish after SIGTERM before they are
  // cancelled, >= 0. Default 30.
  double drain_grace_seconds = 30.0;

  // --log-format: "text" or "json". Default text.
  LogFormat log_format = LogFormat::kText;
  // --log-level: trace, debug, info, warn, error. Default info.
  std::string log_level = "info";

  static EngineConfig DefaultEngineConfig() {
    EngineConfig c;
    c.max_new_tokens_cap = 4096;
    return c;
  }

  // Checks every field; the message names the flag. Does not touch the file system.
  absl::Status Validate() const;
};

}  // namespace deltaserve
