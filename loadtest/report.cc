// Report formatting (see report.h). Latencies in the table are milliseconds; JSON uses seconds.
#include "loadtest/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace deltaserve::loadtest {
namespace {

double Rate(double n, double seconds) { return seconds > 0 ? n / seconds : 0; }

nlohmann::ordered_json PercentilesJson(const Percentiles& p) {
  nlohmann::ordered_json j;
  j["count"] = p.count;
  j["p50"] = p.p50;
  j["p90"] = p.p90;
  j["p99"] = p.p99;
  j["mean"] = p.mean;
  j["max"] = p.max;
  return j;
}

}  // namespace

std::string FormatTable(const LoadConfig& c, const LoadResult& r) {
  std::string out;
  absl::StrAppendFormat(&out, "deltaserve-loadtest: model %s, %s loop", r.model, r.mode);
  if (c.mode == "closed") {
    absl::StrAppendFormat(&out, ", concurrency %d", c.concurrency);
  } else {
    absl::StrAppendFormat(&out, ", rate %.2f req/s (max in flight %d)", c.rate, c.max_in_flight);
  }
  absl::StrAppendFormat(&out, ", prompt %s, output %s, %.1f s\n\n", c.prompt_len.spec(),
                        c.output_len.spec(), r.wall_seconds);
  absl::StrAppendFormat(&out, "%-28s %12s\n", "requests ok", absl::StrCat(r.requests_ok));
  absl::StrAppendFormat(&out, "%-28s %12s\n", "requests failed", absl::StrCat(r.requests_failed));
  for (const auto& [code, n] : r.errors) {
    absl::StrAppendFormat(&out, "  %-26s %12d\n", code, n);
  }
  absl::StrAppendFormat(&out, "%-28s %12.2f\n", "requests/s", Rate(r.requests_ok, r.wall_seconds));
  absl::StrAppendFormat(&out, "%-28s %12.1f\n", "generated tokens/s",
                        Rate(static_cast<double>(r.generated_tokens), r.wall_seconds));
  absl::StrAppendFormat(&out, "%-28s %12.1f\n", "prompt tokens/s",
                        Rate(static_cast<double>(r.prompt_tokens), r.wall_seconds));
  absl::StrAppendFormat(&out, "\n%-28s %10s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p90",
                        "p99", "mean", "max");
  for (const auto& [name, p] : {std::pair<const char*, const Percentiles&>{"time to first token", r.ttft},
                                {"inter-token latency", r.itl},
                                {"end-to-end", r.e2e}}) {
    absl::StrAppendFormat(&out, "%-28s %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, p.p50 * 1e3,
                          p.p90 * 1e3, p.p99 * 1e3, p.mean * 1e3, p.max * 1e3);
  }
  if (!r.first_error.empty()) absl::StrAppendFormat(&out, "\nfirst error: %s\n", r.first_error);
  return out;
}

std::string FormatJson(const LoadConfig& c, const LoadResult& r) {
  nlohmann::ordered_json j;
  j["model"] = r.model;
  j["mode"] = r.mode;
  if (c.mode == "closed") {
    j["concurrency"] = c.concurrency;
  } else {
    j["rate"] = c.rate;
    j["max_in_flight"] = c.max_in_flight;
  }
  j["prompt_len"] = c.prompt_len.spec();
  j["output_len"] = c.output_len.spec();
  j["duration_seconds"] = c.duration_seconds;
  j["wall_seconds"] = r.wall_seconds;
  j["requests_ok"] = r.requests_ok;
  j["requests_failed"] = r.requests_failed;
  j["errors"] = r.errors;
  j["first_error"] = r.first_error;
  j["requests_per_second"] = Rate(r.requests_ok, r.wall_seconds);
  j["generated_tokens"] = r.generated_tokens;
  j["prompt_tokens"] = r.prompt_tokens;
  j["generated_tokens_per_second"] = Rate(static_cast<double>(r.generated_tokens), r.wall_seconds);
  j["prompt_tokens_per_second"] = Rate(static_cast<double>(r.prompt_tokens), r.wall_seconds);
  j["time_to_first_token_seconds"] = PercentilesJson(r.ttft);
  j["inter_token_latency_seconds"] = PercentilesJson(r.itl);
  j["end_to_end_latency_seconds"] = PercentilesJson(r.e2e);
  return j.dump(2) + "\n";
}

}  // namespace deltaserve::loadtest
