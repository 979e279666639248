// Tests for ServerMetrics: every documented metric is exported with its labels, observer calls
// and server events move the right series, gauges are refreshed from the stats source at scrape.
#include "server/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

// The value of the sample line `series` (name plus labels exactly as exposed), or NaN.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nan("");
}

TEST(ServerMetricsTest, ExportsEveryDocumentedName) {
  ServerMetrics m("default", "cpu");
  const std::string text = m.SerializeText();
  for (const char* name :
       {"deltaserve_requests_total", "deltaserve_requests_rejected_total",
        "deltaserve_grpc_requests_total", "deltaserve_running_requests",
        "deltaserve_waiting_requests", "deltaserve_swapped_requests",
        "deltaserve_state_pool_slots", "deltaserve_state_pool_slots_used",
        "deltaserve_state_pool_bytes", "deltaserve_state_pool_slot_bytes",
        "deltaserve_prompt_tokens_total", "deltaserve_generated_tokens_total",
        "deltaserve_time_to_first_token_seconds", "deltaserve_inter_token_latency_seconds",
        "deltaserve_request_duration_seconds", "deltaserve_queue_time_seconds",
        "deltaserve_step_duration_seconds", "deltaserve_step_batch_size", "deltaserve_draining",
        "deltaserve_model_info"}) {
    EXPECT_THAT(text, HasSubstr(std::string("# TYPE ") + name + " ")) << name;
  }
  EXPECT_EQ(Sample(text, "deltaserve_model_info{backend=\"cpu\",model=\"default\"}"), 1);
  for (const char* reason : {"length", "eos", "stop", "cancelled", "deadline", "error"}) {
    EXPECT_EQ(Sample(text, std::string("deltaserve_requests_total{finish_reason=\"") + reason +
                               "\"}"),
              0)
        << reason;
  }
  for (const char* code :
       {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "UNAVAILABLE"}) {
    EXPECT_EQ(Sample(text, std::string("deltaserve_requests_rejected_total{code=\"") + code + "\"}"),
              0)
        << code;
  }
}

TEST(ServerMetricsTest, ObserverAndServerEventsMoveTheirSeries) {
  ServerMetrics m("default", "cpu");
  m.OnStep({StepPhase::kPrefill, 2, 30, 2, 0.010, 0.001});
  m.OnStep({StepPhase::kDecode, 3, 0, 3, 0.002, 0.0});
  m.OnStep({StepPhase::kMixed, 4, 5, 3, 0.004, 0.0});
  m.OnInterTokenLatency(0.003);
  m.OnRequestAdmitted("a", 0.25);
  RequestReport report;
  report.id = "a";
  report.finish_reason = FinishReason::kEos;
  report.usage = {30, 8};
  report.timings = {0.25, 0.5, 1.5};
  m.OnRequestFinished(report);
  m.RecordRejected(grpc::StatusCode::RESOURCE_EXHAUSTED);
  m.RecordRejected(grpc::StatusCode::INVALID_ARGUMENT);
  m.RecordRejected(grpc::StatusCode::INVALID_ARGUMENT);
  m.RecordRpc(RpcMethod::kGenerate, grpc::StatusCode::OK);
  m.RecordRpc(RpcMethod::kTokenize, grpc::StatusCode::INVALID_ARGUMENT);
  m.SetDraining(true);

  const std::string t = m.SerializeText();
  EXPECT_EQ(Sample(t, "deltaserve_prompt_tokens_total"), 35);
  EXPECT_EQ(Sample(t, "deltaserve_generated_tokens_total"), 8);
  EXPECT_EQ(Sample(t, "deltaserve_requests_total{finish_reason=\"eos\"}"), 1);
  EXPECT_EQ(Sample(t, "deltaserve_requests_total{finish_reason=\"length\"}"), 0);
  EXPECT_EQ(Sample(t, "deltaserve_requests_rejected_total{code=\"INVALID_ARGUMENT\"}"), 2);
  EXPECT_EQ(Sample(t, "deltaserve_requests_rejected_total{code=\"RESOURCE_EXHAUSTED\"}"), 1);
  EXPECT_EQ(Sample(t, "deltaserve_grpc_requests_total{code=\"OK\",method=\"Generate\"}"), 1);
  EXPECT_EQ(
      Sample(t, "deltaserve_grpc_requests_total{code=\"INVALID_ARGUMENT\",method=\"Tokenize\"}"),
      1);
  EXPECT_EQ(Sample(t, "deltaserve_step_duration_seconds_count{phase=\"prefill\"}"), 1);
  EXPECT_DOUBLE_EQ(Sample(t, "deltaserve_step_duration_seconds_sum{phase=\"prefill\"}"), 0.011);
  EXPECT_EQ(Sample(t, "deltaserve_step_duration_seconds_count{phase=\"decode\"}"), 1);
  EXPECT_EQ(Sample(t, "deltaserve_step_duration_seconds_count{phase=\"mixed\"}"), 1);
  EXPECT_EQ(Sample(t, "deltaserve_step_batch_size_sum"), 9);
  EXPECT_EQ(Sample(t, "deltaserve_inter_token_latency_seconds_count"), 1);
  EXPECT_EQ(Sample(t, "deltaserve_queue_time_seconds_sum"), 0.25);
  EXPECT_EQ(Sample(t, "deltaserve_time_to_first_token_seconds_sum"), 0.5);
  EXPECT_EQ(Sample(t, "deltaserve_request_duration_seconds_sum"), 1.5);
  EXPECT_EQ(Sample(t, "deltaserve_request_duration_seconds_bucket{le=\"+Inf\"}"), 1);
  EXPECT_EQ(Sample(t, "deltaserve_draining"), 1);
}

TEST(ServerMetricsTest, GaugesComeFromTheStatsSourceAtScrape) {
  ServerMetrics m("default", "cpu");
  int calls = 0;
  EngineStats stats;
  stats.slots_total = 8;
  stats.slots_used = 3;
  stats.bytes_per_slot = 1000;
  stats.running_requests = 3;
  stats.waiting_requests = 2;
  stats.swapped_requests = 1;
  m.SetStatsSource([&]() -> std::optional<EngineStats> {
    ++calls;
    return stats;
  });
  std::string t = m.SerializeText();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(Sample(t, "deltaserve_state_pool_slots"), 8);
  EXPECT_EQ(Sample(t, "deltaserve_state_pool_slots_used"), 3);
  EXPECT_EQ(Sample(t, "deltaserve_state_pool_slot_bytes"), 1000);
  EXPECT_EQ(Sample(t, "deltaserve_state_pool_bytes"), 8000);
  EXPECT_EQ(Sample(t, "deltaserve_running_requests"), 3);
  EXPECT_EQ(Sample(t, "deltaserve_waiting_requests"), 2);
  EXPECT_EQ(Sample(t, "deltaserve_swapped_requests"), 1);
  stats.slots_used = 1;
  t = m.SerializeText();
  EXPECT_EQ(Sample(t, "deltaserve_state_pool_slots_used"), 1);
  m.SetStatsSource(nullptr);
  t = m.SerializeText();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(Sample(t, "deltaserve_state_pool_slots_used"), 1);  // last value kept
}

}  // namespace
}  // namespace deltaserve
