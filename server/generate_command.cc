// `deltaserve generate` (see generate_command.h). The request goes through Engine::Create /
// Submit / RequestStream exactly as a gRPC request would; the command only turns flags into a
// GenerationRequest and prints what the stream yields.
#include "server/generate_command.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/engine_config.h"
#include "engine/model_config.h"
#include "engine/request.h"
#include "engine/runner_factory.h"
#include "engine/tokenizer.h"

namespace deltaserve {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;
constexpr char kRequestId[] = "generate-0";

// Set by the first SIGINT; the request is then cancelled and the stream drains normally.
std::atomic<bool> g_interrupted{false};

extern "C" void OnSigint(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C terminates at once
}

// Restores the previous SIGINT disposition when the command returns.
class ScopedSigintHandler {
 public:
  ScopedSigintHandler() : previous_(std::signal(SIGINT, OnSigint)) { g_interrupted.store(false); }
  ~ScopedSigintHandler() { std::signal(SIGINT, previous_); }

 private:
  void (*previous_)(int);
};

int Fail(std::FILE* err, int code, const absl::Status& status) {
  std::fprintf(err, "deltaserve generate: %s\n", std::string(status.message()).c_str());
  return code;
}

// The prompt's token ids, BOS first unless the model has none or --no-bos.
absl::StatusOr<std::vector<int32_t>> PromptTokens(const GenerateOptions& o,
                                                  const ModelConfig& config,
                                                  const Tokenizer& tokenizer) {
  std::vector<int32_t> tokens;
  if (config.bos_token_id >= 0 && !o.no_bos) tokens.push_back(config.bos_token_id);
  if (o.prompt_ids.has_value()) {
    for (size_t i = 0; i < o.prompt_ids->size(); ++i) {
      const int32_t id = (*o.prompt_ids)[i];
      if (id < 0 || id >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("--prompt-ids: id ", id, " (position ", i,
                                                       ") is outside the model's vocabulary [0, ",
                                                       config.vocab_size, ")"));
      }
      tokens.push_back(id);
    }
  } else {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(*o.prompt);
    if (!ids.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt: cannot tokenize: ", ids.status().message()));
    }
    tokens.insert(tokens.end(), ids->begin(), ids->end());
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        "the prompt is empty: give a non-empty --prompt or --prompt-ids (or drop --no-bos)");
  }
  return tokens;
}

}  // namespace

int RunGenerate(const GenerateOptions& o, std::FILE* out, std::FILE* err) {
  absl::StatusOr<ModelConfig> config = ModelConfig::LoadFromDir(o.model_dir);
  if (!config.ok()) return Fail(err, kExitFailure, config.status());
  absl::StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::Load(o.model_dir, *config);
  if (!loaded.ok()) return Fail(err, kExitFailure, loaded.status());
  std::shared_ptr<const Tokenizer> tokenizer = *std::move(loaded);

  absl::StatusOr<std::vector<int32_t>> prompt = PromptTokens(o, *config, *tokenizer);
  if (!prompt.ok()) return Fail(err, kExitUsage, prompt.status());

  RunnerOptions runner_options;
  runner_options.backend = o.backend;
  runner_options.model_dir = o.model_dir;
  runner_options.state_dtype = o.state_dtype;
  runner_options.ring_dtype = o.ring_dtype;
  runner_options.prefill_precision = o.prefill_precision;
  runner_options.num_slots = 1;
  runner_options.threads = o.threads;
  absl::StatusOr<std::unique_ptr<ModelRunner>> runner = CreateModelRunner(runner_options);
  if (!runner.ok()) return Fail(err, kExitFailure, runner.status());

  EngineConfig engine_config;
  engine_config.max_batch_sequences = 1;
  engine_config.max_waiting = 1;
  // One local request: no server-side cap; the model's max_context still ends the generation.
  engine_config.max_new_tokens_cap =
      std::max<int64_t>(engine_config.max_new_tokens_cap, o.max_new_tokens);
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(engine_config, *std::move(runner), tokenizer, /*observer=*/nullptr);
  if (!engine.ok()) return Fail(err, kExitFailure, engine.status());

  GenerationRequest request;
  request.id = kRequestId;
  request.prompt_tokens = *std::move(prompt);
  request.sampling = o.sampling;
  request.stopping.max_new_tokens = o.max_new_tokens;
  request.stopping.ignore_eos = o.ignore_eos;
  request.stopping.stop_strings = o.stop;

  ScopedSigintHandler sigint;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = (*engine)->Submit(std::move(request));
  if (!stream.ok()) {
    const int code = stream.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                                                  : kExitFailure;
    return Fail(err, code, stream.status());
  }

  std::vector<int32_t> generated;
  bool cancel_sent = false;
  RequestEvent terminal;
  for (;;) {
    if (g_interrupted.load() && !cancel_sent) {
      (*engine)->Cancel(kRequestId);
      cancel_sent = true;
    }
    std::optional<RequestEvent> event = (*stream)->Next(absl::Milliseconds(100));
    if (!event.has_value()) continue;
    if (!event->text.empty()) {
      std::fwrite(event->text.data(), 1, event->text.size(), out);
      std::fflush(out);
    }
    generated.insert(generated.end(), event->tokens.begin(), event->tokens.end());
    if (event->finished) {
      terminal = *std::move(event);
      break;
    }
  }
  (*engine)->Shutdown();

  std::fputc('\n', out);  // always exactly one, so the ids line is unambiguous
  if (o.print_ids) std::fprintf(out, "%s\n", absl::StrJoin(generated, ",").c_str());
  std::fflush(out);

  const Timings& t = terminal.timings;
  const double decode_seconds = t.total_seconds - t.first_token_seconds;
  const int64_t n = terminal.usage.generated_tokens;
  std::fprintf(err,
               "[%s: %lld prompt tokens, %lld generated; first token %.3f s, total %.3f s, "
               "%.1f tokens/s after the first]\n",
               FinishReasonName(terminal.finish_reason),
               static_cast<long long>(terminal.usage.prompt_tokens), static_cast<long long>(n),
               t.first_token_seconds, t.total_seconds,
               n > 1 && decode_seconds > 0 ? static_cast<double>(n - 1) / decode_seconds : 0.0);

  switch (terminal.finish_reason) {
    case FinishReason::kError:
      return Fail(err, kExitFailure, terminal.status);
    case FinishReason::kCancelled:
      return g_interrupted.load() ? kExitInterrupted : kExitFailure;
    case FinishReason::kDeadline:
      return kExitFailure;
    case FinishReason::kLength:
    case FinishReason::kEos:
    case FinishReason::kStop:
      break;
  }
  return kExitOk;
}

int RunGenerateCommand(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  absl::StatusOr<GenerateFlagsResult> parsed = ParseGenerateFlags(args);
  if (!parsed.ok()) return Fail(stderr, kExitUsage, parsed.status());
  if (parsed->help) {
    std::fputs(GenerateUsage().c_str(), stdout);
    return kExitOk;
  }
  return RunGenerate(parsed->options, stdout, stderr);
}

}  // namespace deltaserve
