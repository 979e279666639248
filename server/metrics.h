// ServerMetrics: the Prometheus metrics of one server process (names and meanings in
// server/METRICS.md). It is the engine's EngineObserver (counters and histograms updated from the
// engine thread) and refreshes its gauges from Engine::Stats() whenever it is scraped.
//
// Thread-safety: every method is thread-safe; prometheus-cpp metrics are internally synchronized.
// The stats source is called on the scraping thread and must not block for long.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "engine/engine_observer.h"
#include "grpcpp/support/status.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace deltaserve {

// The RPC methods of deltaserve.v1.DeltaServe, as metric label values.
enum class RpcMethod { kGenerate, kComplete, kTokenize, kDetokenize, kGetModelInfo };
const char* RpcMethodName(RpcMethod m);

// Lower-case finish reason label: length, eos, stop, cancelled, deadline, error.
const char* FinishReasonLabel(FinishReason r);

class ServerMetrics : public EngineObserver {
 public:
  ServerMetrics(const std::string& model_name, const std::string& backend);
  ~ServerMetrics() override;

  // EngineObserver (engine thread). Rejections are counted by the server (RecordRejected), so
  // OnRequestRejected does nothing.
  void OnStep(const StepReport& step) override;
  void OnInterTokenLatency(double seconds) override;
  void OnRequestAdmitted(const std::string& id, double queue_seconds) override;
  void OnRequestFinished(const RequestReport& report) override;

  // A request refused before it reached the model (validation, full queue, auth, draining).
  void RecordRejected(grpc::StatusCode code);
  // A finished RPC of the DeltaServe service.
  void RecordRpc(RpcMethod method, grpc::StatusCode code);
  void SetDraining(bool draining);
  // Where the gauges come from at scrape time; returns nullopt while no engine is running.
  void SetStatsSource(std::function<std::optional<EngineStats>()> source);

  // Refreshes the gauges, then returns every metric family (what /metrics serves).
  std::shared_ptr<prometheus::Collectable> collectable() { return collectable_; }
  // The Prometheus text exposition of collectable() (for tests and debugging).
  std::string SerializeText();

 private:
  class ScrapeCollectable;
  void RefreshGauges();

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> collectable_;

  // Held for a whole refresh of the gauges from the stats source.
  absl::Mutex source_mu_;
  std::function<std::optional<EngineStats>()> stats_source_ ABSL_GUARDED_BY(source_mu_);

  prometheus::Family<prometheus::Counter>* requests_total_;
  prometheus::Family<prometheus::Counter>* rejected_total_;
  prometheus::Family<prometheus::Counter>* grpc_requests_total_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* swapped_;
  prometheus::Gauge* slots_total_;  // the pool's capacity
  prometheus::Gauge* slots_used_;
  prometheus::Gauge* pool_bytes_;
  prometheus::Gauge* slot_bytes_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generated_tokens_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* duration_;
  prometheus::Histogram* queue_time_;
  prometheus::Histogram* step_prefill_;
  prometheus::Histogram* step_decode_;
  prometheus::Histogram* step_mixed_;
  prometheus::Histogram* step_batch_;
  prometheus::Gauge* draining_;
};

}  // namespace deltaserve
