// deltaserve-loadtest: a gRPC load generator for a deltaserve server. Prints a table and, with
// --json_out, writes the same numbers as JSON. Exits 1 when any request failed (unless
// --allow_errors), 2 for bad flags or an unreachable server.
//
//   deltaserve-loadtest --target localhost:50051 --mode closed --concurrency 8 --duration 20
//   deltaserve-loadtest --target localhost:50051 --mode open --rate 5 --prompt_len uniform:16:128
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "loadtest/load_generator.h"
#include "loadtest/report.h"

ABSL_FLAG(std::string, target, "localhost:50051", "server address host:port");
ABSL_FLAG(std::string, mode, "closed", "closed (N concurrent streams) or open (Poisson arrivals)");
ABSL_FLAG(int, concurrency, 8, "closed loop: concurrent streams (>= 1)");
ABSL_FLAG(double, rate, 10, "open loop: mean arrivals per second (> 0)");
ABSL_FLAG(int, max_in_flight, 256, "open loop: most streams open at once (>= 1)");
ABSL_FLAG(double, duration, 20, "seconds to issue requests (> 0)");
ABSL_FLAG(std::string, prompt_len, "uniform:16:64",
          "prompt tokens: N, uniform:A:B, exp:MEAN or normal:MEAN:STDDEV");
ABSL_FLAG(std::string, output_len, "uniform:16:64", "generated tokens, same forms as --prompt_len");
ABSL_FLAG(double, temperature, 1.0, "sampling temperature (0: greedy)");
ABSL_FLAG(uint64_t, seed, 1, "seed for lengths, prompts and sampling");
ABSL_FLAG(std::string, api_key, "", "API key (sent as `authorization: Bearer <key>`)");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificate: connect with TLS and trust it");
ABSL_FLAG(std::string, tls_server_name, "", "TLS: override the expected server name");
ABSL_FLAG(double, request_timeout, 300, "per-request deadline in seconds");
ABSL_FLAG(std::string, json_out, "", "also write the report as JSON to this file");
ABSL_FLAG(bool, allow_errors, false, "exit 0 even when some requests failed");

namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "deltaserve-loadtest: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("gRPC load generator for deltaserve (see --helpfull)");
  absl::ParseCommandLine(argc, argv);
  using deltaserve::loadtest::LengthDistribution;
  deltaserve::loadtest::LoadConfig config;
  config.mode = absl::GetFlag(FLAGS_mode);
  if (config.mode != "closed" && config.mode != "open") return Usage("--mode must be closed or open");
  config.concurrency = absl::GetFlag(FLAGS_concurrency);
  if (config.concurrency < 1) return Usage("--concurrency must be >= 1");
  config.rate = absl::GetFlag(FLAGS_rate);
  if (!(config.rate > 0)) return Usage("--rate must be > 0");
  config.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  if (config.max_in_flight < 1) return Usage("--max_in_flight must be >= 1");
  config.duration_seconds = absl::GetFlag(FLAGS_duration);
  if (!(config.duration_seconds > 0)) return Usage("--duration must be > 0");
  auto prompt_len = LengthDistribution::Parse(absl::GetFlag(FLAGS_prompt_len));
  if (!prompt_len.ok()) return Usage(absl::StrCat("--prompt_len: ", prompt_len.status().message()));
  auto output_len = LengthDistribution::Parse(absl::GetFlag(FLAGS_output_len));
  if (!output_len.ok()) return Usage(absl::StrCat("--output_len: ", output_len.status().message()));
  config.prompt_len = *prompt_len;
  config.output_len = *output_len;
  config.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  config.seed = absl::GetFlag(FLAGS_seed);
  config.api_key = absl::GetFlag(FLAGS_api_key);
  config.request_timeout_seconds = absl::GetFlag(FLAGS_request_timeout);

  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (const std::string ca_file = absl::GetFlag(FLAGS_tls_ca); !ca_file.empty()) {
    std::ifstream in(ca_file);
    if (!in) return Usage(absl::StrCat("--tls_ca: cannot read ", ca_file));
    grpc::SslCredentialsOptions options;
    options.pem_root_certs.assign(std::istreambuf_iterator<char>(in), {});
    creds = grpc::SslCredentials(options);
    if (const std::string name = absl::GetFlag(FLAGS_tls_server_name); !name.empty()) {
      args.SetSslTargetNameOverride(name);
    }
  }
  auto channel = grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target), creds, args);

  absl::StatusOr<deltaserve::loadtest::LoadResult> result =
      deltaserve::loadtest::RunLoad(channel, config);
  if (!result.ok()) return Usage(std::string(result.status().message()));
  std::fputs(deltaserve::loadtest::FormatTable(config, *result).c_str(), stdout);
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    std::ofstream out(path);
    out << deltaserve::loadtest::FormatJson(config, *result);
    if (!out) return Usage(absl::StrCat("--json_out: cannot write ", path));
  }
  return result->requests_failed > 0 && !absl::GetFlag(FLAGS_allow_errors) ? 1 : 0;
}
