// LoadGenerator: drives a deltaserve server with Generate streams and measures it.
//
// Closed loop: `concurrency` workers each keep one stream open, starting the next request as
// soon as the previous one ends, until `duration` has passed. Open loop: requests arrive as a
// Poisson process of `rate` per second for `duration`; each is served by a pool of
// `max_in_flight` workers, and its latencies count from its scheduled arrival (so client-side
// queueing shows up instead of being hidden). Requests in flight when the duration ends are
// finished and counted.
//
// Each request is a random token-id prompt (lengths from prompt_len, ids below the model's
// vocabulary) and asks for exactly output_len tokens (ignore_eos), so throughput is comparable
// across runs. Thread-safety: Run is called once from one thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "loadtest/distribution.h"
#include "loadtest/latency_stats.h"

namespace deltaserve::loadtest {

struct LoadConfig {
  std::string mode = "closed";  // "closed" or "open"
  int concurrency = 8;          // closed loop: streams kept open
  double rate = 10;             // open loop: arrivals per second
  int max_in_flight = 256;      // open loop: most streams open at once
  double duration_seconds = 20;
  LengthDistribution prompt_len;
  LengthDistribution output_len;
  float temperature = 1.0f;
  uint64_t seed = 1;
  std::string api_key;          // sent as `authorization: Bearer <key>` when non-empty
  double request_timeout_seconds = 300;  // per-call gRPC deadline
};

struct LoadResult {
  std::string mode;
  double wall_seconds = 0;
  int64_t requests_ok = 0;
  int64_t requests_failed = 0;
  std::map<std::string, int64_t> errors;  // gRPC code name -> count
  std::string first_error;                // one example message
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  Percentiles ttft, itl, e2e;
  int vocab_size = 0;
  std::string model;
};

absl::StatusOr<LoadResult> RunLoad(std::shared_ptr<grpc::Channel> channel,
                                   const LoadConfig& config);

}  // namespace deltaserve::loadtest
