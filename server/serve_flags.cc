// Table-driven parser for `deltaserve serve` flags. Each flag has one entry: its name, a value
// placeholder, a help line and a setter that parses and stores the value.
#include "server/serve_flags.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace deltaserve {
namespace {

using Setter = std::function<absl::Status(const std::string& value, ServerConfig* config)>;

struct FlagSpec {
  const char* name;
  const char* value;  // placeholder in the usage text; nullptr for booleans
  const char* help;
  Setter set;
};

absl::Status BadValue(const char* name, const std::string& value, const char* expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", name, ": expected ", expected, ", got \"", value, "\""));
}

template <typename T>
Setter IntFlag(const char* name, T ServerConfig::*field) {
  return [name, field](const std::string& v, ServerConfig* c) {
    int64_t x = 0;
    if (!absl::SimpleAtoi(v, &x) || x < std::numeric_limits<T>::min() ||
        x > std::numeric_limits<T>::max()) {
      return BadValue(name, v, "an integer");
    }
    c->*field = static_cast<T>(x);
    return absl::OkStatus();
  };
}

template <typename T>
Setter EngineIntFlag(const char* name, T EngineConfig::*field) {
  return [name, field](const std::string& v, ServerConfig* c) {
    int64_t x = 0;
    if (!absl::SimpleAtoi(v, &x) || x < std::numeric_limits<T>::min() ||
        x > std::numeric_limits<T>::max()) {
      return BadValue(name, v, "an integer");
    }
    c->engine.*field = static_cast<T>(x);
    return absl::OkStatus();
  };
}

Setter StringFlag(std::string ServerConfig::*field) {
  return [field](const std::string& v, ServerConfig* c) {
    c->*field = v;
    return absl::OkStatus();
  };
}

absl::StatusOr<bool> ParseBool(const char* name, const std::string& v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return BadValue(name, v, "true or false");
}

const std::vector<FlagSpec>& Flags() {
  static const std::vector<FlagSpec>* flags = new std::vector<FlagSpec>{
      {"model", "DIR", "model directory (config.json, weights, tokenizer); required",
       StringFlag(&ServerConfig::model_dir)},
      {"backend", "cpu|cuda", "where the model runs (default cpu)",
       StringFlag(&ServerConfig::backend)},
      {"state-dtype", "f32|bf16", "storage of the recurrent states (default f32)",
       StringFlag(&ServerConfig::state_dtype)},
      {"ring-dtype", "state|f32|bf16",
       "storage of the SWA rings of hybrid models (default state: as --state-dtype)",
       StringFlag(&ServerConfig::ring_dtype)},
      {"prefill-precision", "fp32|tf32|bf16",
       "CUDA chunked-prefill products: fp32-level 3xTF32, single TF32 or bf16 (default fp32)",
       StringFlag(&ServerConfig::prefill_precision)},
      {"threads", "N", "CPU backend threads; 0 means all hardware threads (default 0)",
       IntFlag("threads", &ServerConfig::cpu_threads)},
      {"device", "N", "CUDA device ordinal (default 0)", IntFlag("device", &ServerConfig::device)},
      {"host", "ADDR", "address to listen on (default 0.0.0.0)", StringFlag(&ServerConfig::host)},
      {"port", "P", "gRPC port; 0 picks a free one (default 50051)",
       IntFlag("port", &ServerConfig::port)},
      {"metrics-port", "M", "Prometheus /metrics port (default 9400)",
       IntFlag("metrics-port", &ServerConfig::metrics_port)},
      {"pool-budget", "BYTES", "memory for the state-slot pool, e.g. 512Mi, 4Gi (default 1Gi)",
       [](const std::string& v, ServerConfig* c) {
         auto bytes = ParseByteSize(v);
         if (!bytes.ok()) return BadValue("pool-budget", v, "a byte size such as 512Mi or 4G");
         c->pool_budget_bytes = *bytes;
         return absl::OkStatus();
       }},
      {"pool-slots", "N", "exact number of state slots; 0 sizes the pool by --pool-budget (default 0)",
       IntFlag("pool-slots", &ServerConfig::pool_slots)},
      {"token-budget", "N", "tokens one engine step may carry (default 2048; 8192 with --backend=cuda)",
       EngineIntFlag("token-budget", &EngineConfig::max_step_tokens)},
      {"prefill-chunk", "N",
       "largest prompt chunk per sequence per step (default 512; 4096 with --backend=cuda; never "
       "above --token-budget when not given)",
       EngineIntFlag("prefill-chunk", &EngineConfig::prefill_chunk)},
      {"max-batch", "N", "most sequences in one step (default 256)",
       EngineIntFlag("max-batch", &EngineConfig::max_batch_sequences)},
      {"queue-limit", "N",
       "requests that may wait for a slot; more get RESOURCE_EXHAUSTED (default 1024)",
       EngineIntFlag("queue-limit", &EngineConfig::max_waiting)},
      {"swap", "BOOL", "swap paused requests' state to host memory under pressure (default true)",
       [](const std::string& v, ServerConfig* c) {
         auto b = ParseBool("swap", v);
         if (!b.ok()) return b.status();
         c->engine.enable_swap = *b;
         return absl::OkStatus();
       }},
      {"preempt-after-steps", "N",
       "engine steps a request waits for a slot before a running one is swapped out for it "
       "(default 256)",
       EngineIntFlag("preempt-after-steps", &EngineConfig::preempt_after_steps)},
      {"max-swapped", "N", "most requests swapped out to host memory at once (default 64)",
       EngineIntFlag("max-swapped", &EngineConfig::max_swapped)},
      {"max-new-tokens-cap", "N", "largest max_new_tokens a request may ask for (default 4096)",
       EngineIntFlag("max-new-tokens-cap", &EngineConfig::max_new_tokens_cap)},
      {"default-max-new-tokens", "N", "max_new_tokens of requests that set none (default 256)",
       IntFlag("default-max-new-tokens", &ServerConfig::default_max_new_tokens)},
      {"max-prompt-tokens", "N",
       "most prompt tokens per request; 0 means the model's context limit - 1 (default 0)",
       IntFlag("max-prompt-tokens", &ServerConfig::max_prompt_tokens)},
      {"api-key-file", "FILE",
       "accepted API keys, one per line; calls then need `authorization: Bearer <key>`",
       StringFlag(&ServerConfig::api_key_file)},
      {"tls-cert", "FILE", "PEM certificate chain; serve TLS (with --tls-key)",
       StringFlag(&ServerConfig::tls_cert_file)},
      {"tls-key", "FILE", "PEM private key (with --tls-cert)",
       StringFlag(&ServerConfig::tls_key_file)},
      {"max-message-bytes", "BYTES", "largest gRPC message (default 4Mi)",
       [](const std::string& v, ServerConfig* c) {
         auto bytes = ParseByteSize(v);
         if (!bytes.ok()) return BadValue("max-message-bytes", v, "a byte size such as 4Mi");
         c->max_message_bytes = *bytes;
         return absl::OkStatus();
       }},
      {"grpc-threads", "N", "most threads serving calls (default 1024)",
       IntFlag("grpc-threads", &ServerConfig::grpc_threads)},
      {"drain-grace", "SECONDS",
       "after SIGTERM, time in-flight requests get to finish (default 30)",
       [](const std::string& v, ServerConfig* c) {
         double s = 0;
         if (!absl::SimpleAtod(v, &s) || !std::isfinite(s)) {
           return BadValue("drain-grace", v, "a number of seconds");
         }
         c->drain_grace_seconds = s;
         return absl::OkStatus();
       }},
      {"log-format", "text|json", "log line format (default text)",
       [](const std::string& v, ServerConfig* c) {
         if (v == "text") {
           c->log_format = LogFormat::kText;
         } else if (v == "json") {
           c->log_format = LogFormat::kJson;
         } else {
           return BadValue("log-format", v, "text or json");
         }
         return absl::OkStatus();
       }},
      {"log-level", "LEVEL", "trace, debug, info, warn or error (default info)",
       StringFlag(&ServerConfig::log_level)},
  };
  return *flags;
}

const FlagSpec* FindFlag(absl::string_view name) {
  for (const FlagSpec& f : Flags()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<int64_t> ParseByteSize(const std::string& text) {
  absl::string_view s = text;
  int64_t mult = 1;
  struct Suffix {
    const char* s;
    int64_t m;
  };
  static constexpr Suffix kSuffixes[] = {
      {"Ki", int64_t{1} << 10}, {"Mi", int64_t{1} << 20}, {"Gi", int64_t{1} << 30},
      {"Ti", int64_t{1} << 40}, {"K", 1000},              {"M", 1000 * 1000},
      {"G", 1000 * 1000 * 1000}, {"T", int64_t{1000} * 1000 * 1000 * 1000}};
  for (const Suffix& suf : kSuffixes) {
    if (absl::ConsumeSuffix(&s, suf.s)) {
      mult = suf.m;
      break;
    }
  }
  int64_t n = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &n) || n < 0 ||
      n > std::numeric_limits<int64_t>::max() / mult) {
    return absl::InvalidArgumentError(absl::StrCat("not a byte size: \"", text, "\""));
  }
  return n * mult;
}

absl::StatusOr<ServeFlagsResult> ParseServeFlags(const std::vector<std::string>& args) {
  ServeFlagsResult result;
  bool default_max_new_tokens_set = false, token_budget_set = false, prefill_chunk_set = false;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      result.help = true;
      return result;
    }
    if (!absl::ConsumePrefix(&arg, "--") || arg.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", args[i], "\" (flags look like --name=value)"));
    }
    std::string name(arg);
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    }
    const FlagSpec* flag = FindFlag(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see deltaserve serve --help)"));
    }
    if (!value.has_value()) {
      if (flag->value != nullptr && absl::string_view(flag->value) == "BOOL" &&
          (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, ": missing value"));
      }
    }
    if (absl::Status s = flag->set(*value, &result.config); !s.ok()) return s;
    if (name == "default-max-new-tokens") default_max_new_tokens_set = true;
    if (name == "token-budget") token_budget_set = true;
    if (name == "prefill-chunk") prefill_chunk_set = true;
  }
  // A GPU step is worth more tokens: a whole 4096-token prompt in one step instead of eight
  // 512-token steps (each re-reads every weight) is the difference in time to first token.
  EngineConfig& engine = result.config.engine;
  if (result.config.backend == "cuda") {
    if (!token_budget_set) engine.max_step_tokens = kCudaTokenBudget;
    if (!prefill_chunk_set) engine.prefill_chunk = kCudaPrefillChunk;
  }
  if (!prefill_chunk_set) engine.prefill_chunk = std::min(engine.prefill_chunk, engine.max_step_tokens);
  if (!default_max_new_tokens_set) {
    result.config.default_max_new_tokens = static_cast<int32_t>(std::min<int64_t>(
        result.config.default_max_new_tokens, result.config.engine.max_new_tokens_cap));
  }
  if (absl::Status s = result.config.Validate(); !s.ok()) return s;
  return result;
}

std::string ServeUsage() {
  std::string out =
      "Usage: deltaserve serve --model DIR [--port P] [--metrics-port M] [flags]\n"
      "Serves the model over gRPC (deltaserve.v1.DeltaServe, grpc.health.v1.Health, reflection)\n"
      "and exposes Prometheus metrics on http://HOST:M/metrics. SIGTERM drains and exits 0.\n\n"
      "Flags:\n";
  for (const FlagSpec& f : Flags()) {
    std::string lhs = absl::StrCat("  --", f.name, f.value ? absl::StrCat("=", f.value) : "");
    if (lhs.size() < 34) lhs.resize(34, ' ');
    absl::StrAppend(&out, lhs, " ", f.help, "\n");
  }
  return out;
}

}  // namespace deltaserve
