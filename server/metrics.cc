// ServerMetrics: metric families, bucket layouts and the scrape-time gauge refresh.
#include "server/metrics.h"

#include <utility>
#include <vector>

#include "prometheus/text_serializer.h"
#include "server/status_map.h"

namespace deltaserve {
namespace {

// Exponential buckets: start, start*factor, ... (count bounds).
prometheus::Histogram::BucketBoundaries Exponential(double start, double factor, int count) {
  prometheus::Histogram::BucketBoundaries b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

}  // namespace

const char* RpcMethodName(RpcMethod m) {
  switch (m) {
    case RpcMethod::kGenerate: return "Generate";
    case RpcMethod::kComplete: return "Complete";
    case RpcMethod::kTokenize: return "Tokenize";
    case RpcMethod::kDetokenize: return "Detokenize";
    case RpcMethod::kGetModelInfo: return "GetModelInfo";
  }
  return "unknown";
}

const char* FinishReasonLabel(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStop: return "stop";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kDeadline: return "deadline";
    case FinishReason::kError: return "error";
  }
  return "error";
}

class ServerMetrics::ScrapeCollectable : public prometheus::Collectable {
 public:
  explicit ScrapeCollectable(ServerMetrics* metrics) : metrics_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    metrics_->RefreshGauges();
    return metrics_->registry_->Collect();
  }

 private:
  ServerMetrics* metrics_;
};

ServerMetrics::ServerMetrics(const std::string& model_name, const std::string& backend)
    : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  prometheus::Registry& r = *registry_;

  requests_total_ = &BuildCounter()
                         .Name("deltaserve_requests_total")
                         .Help("Requests that reached the engine and finished, by finish reason")
                         .Register(r);
  for (FinishReason f : {FinishReason::kLength, FinishReason::kEos, FinishReason::kStop,
                         FinishReason::kCancelled, FinishReason::kDeadline, FinishReason::kError}) {
    requests_total_->Add({{"finish_reason", FinishReasonLabel(f)}});
  }
  rejected_total_ = &BuildCounter()
                         .Name("deltaserve_requests_rejected_total")
                         .Help("Requests refused before reaching the model, by gRPC status code")
                         .Register(r);
  for (const char* code : {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED",
                           "UNAVAILABLE"}) {
    rejected_total_->Add({{"code", code}});
  }
  grpc_requests_total_ = &BuildCounter()
                              .Name("deltaserve_grpc_requests_total")
                              .Help("Finished DeltaServe RPCs, by method and gRPC status code")
                              .Register(r);
  for (RpcMethod m : {RpcMethod::kGenerate, RpcMethod::kComplete, RpcMethod::kTokenize,
                      RpcMethod::kDetokenize, RpcMethod::kGetModelInfo}) {
    grpc_requests_total_->Add({{"method", RpcMethodName(m)}, {"code", "OK"}});
  }

  auto gauge = [&r](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(r).Add({});
  };
  running_ = gauge("deltaserve_running_requests", "Requests holding a state slot");
  waiting_ = gauge("deltaserve_waiting_requests",
                   "Requests queued for a state slot (including swapped-out ones)");
  swapped_ = gauge("deltaserve_swapped_requests", "Requests whose state is swapped out to host");
  // A counter rather than a gauge only because of its conventional `_total` name (Prometheus
  // lint rejects `_total` on gauges): it rises from 0 to the pool size once the model is loaded
  // and stays there.
  slots_total_ = &BuildCounter()
                      .Name("deltaserve_state_pool_slots_total")
                      .Help("State slots in the pool (constant once the model is loaded)")
                      .Register(r)
                      .Add({});
  slots_used_ = gauge("deltaserve_state_pool_slots_used", "State slots held by requests");
  pool_bytes_ = gauge("deltaserve_state_pool_bytes", "Bytes of all state slots in the pool");
  slot_bytes_ = gauge("deltaserve_state_pool_slot_bytes", "Bytes of one state slot");
  draining_ = gauge("deltaserve_draining", "1 while the server drains (refuses new requests)");
  BuildGauge()
      .Name("deltaserve_model_info")
      .Help("The served model and backend (value 1)")
      .Register(r)
      .Add({{"model", model_name}, {"backend", backend}})
      .Set(1);

  prompt_tokens_ = &BuildCounter()
                        .Name("deltaserve_prompt_tokens_total")
                        .Help("Prompt tokens fed to the model")
                        .Register(r)
                        .Add({});
  generated_tokens_ = &BuildCounter()
                           .Name("deltaserve_generated_tokens_total")
                           .Help("Tokens generated by the model")
                           .Register(r)
                           .Add({});

  auto histogram = [&r](const char* name, const char* help,
                        const prometheus::Histogram::BucketBoundaries& buckets) {
    return &BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
  };
  ttft_ = histogram("deltaserve_time_to_first_token_seconds",
                    "Seconds from queueing to the first generated token",
                    Exponential(0.005, 2, 15));  // 5 ms .. 82 s
  itl_ = histogram("deltaserve_inter_token_latency_seconds",
                   "Seconds between consecutive generated tokens of a request",
                   Exponential(0.0005, 2, 14));  // 0.5 ms .. 4 s
  duration_ = histogram("deltaserve_request_duration_seconds",
                        "Seconds from queueing to the end of a request",
                        Exponential(0.01, 2, 17));  // 10 ms .. 11 min
  queue_time_ = histogram("deltaserve_queue_time_seconds",
                          "Seconds a request waited for a state slot",
                          Exponential(0.001, 2, 17));  // 1 ms .. 65 s
  auto& steps = BuildHistogram()
                    .Name("deltaserve_step_duration_seconds")
                    .Help("Seconds of one engine step (model run plus bookkeeping), by phase")
                    .Register(r);
  const auto step_buckets = Exponential(0.00025, 2, 16);  // 0.25 ms .. 8 s
  step_prefill_ = &steps.Add({{"phase", "prefill"}}, step_buckets);
  step_decode_ = &steps.Add({{"phase", "decode"}}, step_buckets);
  step_mixed_ = &steps.Add({{"phase", "mixed"}}, step_buckets);
  step_batch_ = histogram("deltaserve_step_batch_size", "Sequences in one engine step",
                          Exponential(1, 2, 11));  // 1 .. 1024

  collectable_ = std::make_shared<ScrapeCollectable>(this);
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::OnStep(const StepReport& step) {
  const double seconds = step.runner_seconds + step.engine_seconds;
  switch (step.phase) {
    case StepPhase::kPrefill: step_prefill_->Observe(seconds); break;
    case StepPhase::kDecode: step_decode_->Observe(seconds); break;
    case StepPhase::kMixed: step_mixed_->Observe(seconds); break;
  }
  step_batch_->Observe(step.batch_size);
  if (step.prompt_tokens > 0) prompt_tokens_->Increment(static_cast<double>(step.prompt_tokens));
  if (step.generated_tokens > 0) {
    generated_tokens_->Increment(static_cast<double>(step.generated_tokens));
  }
}

void ServerMetrics::OnInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void ServerMetrics::OnRequestAdmitted(const std::string& id, double queue_seconds) {
  queue_time_->Observe(queue_seconds);
}

void ServerMetrics::OnRequestFinished(const RequestReport& report) {
  requests_total_->Add({{"finish_reason", FinishReasonLabel(report.finish_reason)}}).Increment();
  if (report.usage.generated_tokens > 0) ttft_->Observe(report.timings.first_token_seconds);
  duration_->Observe(report.timings.total_seconds);
}

void ServerMetrics::RecordRejected(grpc::StatusCode code) {
  rejected_total_->Add({{"code", GrpcCodeName(code)}}).Increment();
}

void ServerMetrics::RecordRpc(RpcMethod method, grpc::StatusCode code) {
  grpc_requests_total_->Add({{"method", RpcMethodName(method)}, {"code", GrpcCodeName(code)}})
      .Increment();
}

void ServerMetrics::SetDraining(bool draining) { draining_->Set(draining ? 1 : 0); }

void ServerMetrics::SetStatsSource(std::function<std::optional<EngineStats>()> source) {
  absl::MutexLock lock(&source_mu_);
  stats_source_ = std::move(source);
}

void ServerMetrics::RefreshGauges() {
  absl::MutexLock lock(&source_mu_);
  if (!stats_source_) return;
  const std::optional<EngineStats> stats = stats_source_();
  if (!stats.has_value()) return;
  if (const double d = stats->slots_total - slots_total_->Value(); d > 0) slots_total_->Increment(d);
  running_->Set(stats->running_requests);
  waiting_->Set(stats->waiting_requests);
  swapped_->Set(stats->swapped_requests);
  slots_used_->Set(stats->slots_used);
  slot_bytes_->Set(static_cast<double>(stats->bytes_per_slot));
  pool_bytes_->Set(static_cast<double>(stats->bytes_per_slot) * stats->slots_total);
}

std::string ServerMetrics::SerializeText() {
  return prometheus::TextSerializer().Serialize(collectable_->Collect());
}

}  // namespace deltaserve
