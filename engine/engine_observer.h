// EngineObserver: how the engine reports what it does (the server turns it into Prometheus
// metrics and logs; tests count). Called on the engine thread: implementations must be fast and
// must not call back into the Engine.
#pragma once

#include <cstdint>
#include <string>

#include "engine/request.h"

namespace deltaserve {

enum class StepPhase { kPrefill, kDecode, kMixed };

struct StepReport {
  StepPhase phase = StepPhase::kDecode;
  int batch_size = 0;           // sequences in the step
  int64_t prompt_tokens = 0;    // prompt tokens fed this step
  int64_t generated_tokens = 0; // tokens sampled this step
  double runner_seconds = 0;    // ModelRunner::Step wall time
  double engine_seconds = 0;    // the engine's own work this iteration (scheduling, bookkeeping)
};

struct RequestReport {
  std::string id;
  FinishReason finish_reason = FinishReason::kLength;
  absl::Status status;
  Usage usage;
  Timings timings;
  double mean_inter_token_seconds = 0;  // (last token time - first token time) / (tokens - 1)
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepReport& step) {}
  // One per generated token after the first, with the gap since the previous token.
  virtual void OnInterTokenLatency(double seconds) {}
  virtual void OnRequestAdmitted(const std::string& id, double queue_seconds) {}
  virtual void OnRequestFinished(const RequestReport& report) {}
  virtual void OnRequestRejected(const std::string& id, const absl::Status& status) {}
};

}  // namespace deltaserve
