// `deltaserve serve` (see serve_command.h): start-up order, signal handling and draining.
//
// Start-up: flags -> logging -> block SIGTERM/SIGINT (before any thread exists, so that only
// sigwait sees them) -> read key/TLS files and config.json -> metrics endpoint -> gRPC server
// (health NOT_SERVING) -> tokenizer, runner, engine -> health SERVING.
// Shutdown: on the first signal, drain: health NOT_SERVING, new generation requests refused,
// wait until the engine has nothing in flight or --drain-grace passes (a second signal cuts the
// wait short); then close the gRPC server (cancelling what is left), stop the engine, exit 0.
#include "server/serve_command.h"

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "engine/model_config.h"
#include "engine/runner_factory.h"
#include "engine/tokenizer.h"
#include "server/api_server.h"
#include "server/auth.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/metrics_endpoint.h"
#include "server/model_info.h"
#include "server/serve_flags.h"
#include "spdlog/spdlog.h"

namespace deltaserve {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is empty"));
  return ss.str();
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const ServerConfig& config,
                                                              const ModelConfig& model_config,
                                                              std::shared_ptr<ServerMetrics> metrics) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(config.model_dir, model_config);
  if (!tokenizer.ok()) return tokenizer.status();
  std::shared_ptr<const Tokenizer> shared_tokenizer(std::move(*tokenizer));

  RunnerOptions options;
  options.backend = config.backend;
  options.model_dir = config.model_dir;
  absl::StatusOr<StateDtype> dtype = ParseStateDtype(config.state_dtype);
  if (!dtype.ok()) return dtype.status();
  options.state_dtype = *dtype;
  absl::StatusOr<std::optional<StateDtype>> ring = ParseRingDtype(config.ring_dtype);
  if (!ring.ok()) return ring.status();
  options.ring_dtype = *ring;
  absl::StatusOr<PrefillPrecision> precision = ParsePrefillPrecision(config.prefill_precision);
  if (!precision.ok()) return precision.status();
  options.prefill_precision = *precision;
  options.num_slots = config.pool_slots;
  options.pool_bytes = config.pool_budget_bytes;
  options.threads = config.cpu_threads;
  options.max_step_tokens = config.engine.max_step_tokens;
  options.device = config.device;
  absl::StatusOr<std::unique_ptr<ModelRunner>> runner = CreateModelRunner(options);
  if (!runner.ok()) return runner.status();

  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Create(config.engine, std::move(*runner), shared_tokenizer, metrics);
  if (!engine.ok()) return engine.status();

  auto loaded = std::make_shared<LoadedModel>();
  loaded->engine = std::move(*engine);
  loaded->limits = MakeRequestLimits(model_config, *shared_tokenizer, config);
  loaded->info = MakeModelInfo(ModelNameFromDir(config.model_dir), config.backend, model_config,
                               loaded->engine->Stats(), loaded->limits, config.engine.max_waiting);
  return loaded;
}

// Waits up to `timeout` for SIGTERM or SIGINT (blocked in every thread); true when one came.
bool WaitForSignal(const sigset_t& signals, absl::Duration timeout, int* signo) {
  const absl::Duration t = timeout < absl::Hours(1) ? timeout : absl::Hours(1);
  const timespec ts = absl::ToTimespec(t);
  const int s = sigtimedwait(&signals, nullptr, &ts);
  if (s > 0) {
    *signo = s;
    return true;
  }
  return false;
}

int Fail(const absl::Status& status) {
  spdlog::error("start-up failed: {}", std::string(status.message()));
  return 1;
}

}  // namespace

int RunServeCommand(const std::vector<std::string>& args) {
  absl::StatusOr<ServeFlagsResult> parsed = ParseServeFlags(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "deltaserve serve: %s\n(run `deltaserve serve --help` for the flags)\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(ServeUsage().c_str(), stdout);
    return 0;
  }
  const ServerConfig& config = parsed->config;
  if (absl::Status s = ConfigureLogging(config.log_format, config.log_level); !s.ok()) {
    std::fprintf(stderr, "deltaserve serve: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ApiKeyAuth auth;
  if (!config.api_key_file.empty()) {
    absl::StatusOr<ApiKeyAuth> a = ApiKeyAuth::FromFile(config.api_key_file);
    if (!a.ok()) return Fail(a.status());
    auth = *std::move(a);
  }
  TlsFiles tls;
  if (!config.tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(config.tls_cert_file, "tls-cert");
    if (!cert.ok()) return Fail(cert.status());
    absl::StatusOr<std::string> key = ReadFile(config.tls_key_file, "tls-key");
    if (!key.ok()) return Fail(key.status());
    tls.cert_chain_pem = *std::move(cert);
    tls.private_key_pem = *std::move(key);
  }
  absl::StatusOr<ModelConfig> model_config = ModelConfig::LoadFromDir(config.model_dir);
  if (!model_config.ok()) {
    return Fail(absl::Status(model_config.status().code(),
                             absl::StrCat("--model ", config.model_dir, ": ",
                                          model_config.status().message())));
  }
  const std::string model_name = ModelNameFromDir(config.model_dir);

  auto metrics = std::make_shared<ServerMetrics>(model_name, config.backend);
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start(config.host, config.metrics_port, metrics.get());
  if (!endpoint.ok()) return Fail(endpoint.status());
  absl::StatusOr<std::unique_ptr<ApiServer>> server =
      ApiServer::Start(config, metrics.get(), std::move(auth), tls);
  if (!server.ok()) return Fail(server.status());
  spdlog::info("listening: grpc {}:{} ({}), metrics http://{}:{}/metrics; loading model {} on {}",
               config.host, (*server)->port(), tls.cert_chain_pem.empty() ? "plaintext" : "tls",
               config.host, (*endpoint)->port(), config.model_dir, config.backend);

  absl::StatusOr<std::shared_ptr<const LoadedModel>> loaded =
      LoadModel(config, *model_config, metrics);
  if (!loaded.ok()) {
    (*server)->Shutdown(absl::ZeroDuration());
    return Fail(absl::Status(loaded.status().code(), absl::StrCat("loading ", config.model_dir,
                                                                  ": ", loaded.status().message())));
  }
  std::shared_ptr<Engine> engine = (*loaded)->engine;
  std::weak_ptr<Engine> weak_engine = engine;
  metrics->SetStatsSource([weak_engine]() -> std::optional<EngineStats> {
    if (std::shared_ptr<Engine> e = weak_engine.lock()) return e->Stats();
    return std::nullopt;
  });
  (*server)->SetModel(*loaded);
  const EngineStats stats = engine->Stats();
  spdlog::info("serving model={} backend={} slots={} slot_bytes={} max_context={}", model_name,
               config.backend, stats.slots_total, stats.bytes_per_slot,
               (*loaded)->limits.max_context);

  int signo = 0;
  while (!WaitForSignal(signals, absl::Hours(1), &signo)) {
  }
  spdlog::info("received {}: draining (grace {}s, {} requests in flight)",
               signo == SIGTERM ? "SIGTERM" : "SIGINT", config.drain_grace_seconds,
               engine->InFlight());
  (*server)->BeginDrain();
  const absl::Time grace_end = absl::Now() + absl::Seconds(config.drain_grace_seconds);
  while (engine->InFlight() > 0 && absl::Now() < grace_end) {
    if (WaitForSignal(signals, absl::Milliseconds(20), &signo)) {
      spdlog::warn("second signal: cancelling {} requests in flight", engine->InFlight());
      break;
    }
  }
  const int left = engine->InFlight();
  if (left > 0) spdlog::warn("drain grace over: cancelling {} requests in flight", left);
  // Handlers whose request finished still write their last message; give them a moment, then
  // cancel whatever is left (their requests are then cancelled in the engine too).
  (*server)->Shutdown(left > 0 ? absl::ZeroDuration() : absl::Seconds(2));
  metrics->SetStatsSource(nullptr);
  engine->Shutdown();
  spdlog::info("drained; exiting");
  return 0;
}

int RunServeCommand(int argc, char** argv) {
  return RunServeCommand(std::vector<std::string>(argv + (argc > 0 ? 1 : 0), argv + argc));
}

}  // namespace deltaserve
