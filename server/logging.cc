// spdlog setup: text pattern or a JSON formatter; the per-request record.
#include "server/logging.h"

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace deltaserve {
namespace {

constexpr char kRequestLogger[] = "request";
// Set once by ConfigureLogging (before other threads log): request records are JSON fields.
bool json_mode = false;

std::string Iso8601Utc(spdlog::log_clock::time_point tp) {
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(tp);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tp - secs).count();
  const std::time_t t = spdlog::log_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
}

// One JSON object per line. The request logger's payload is already JSON fields; every other
// logger's payload is escaped into "msg".
class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const spdlog::string_view_t level_sv = spdlog::level::to_string_view(msg.level);
    const std::string level(level_sv.data(), level_sv.size());
    const std::string logger(msg.logger_name.data(), msg.logger_name.size());
    const std::string payload(msg.payload.data(), msg.payload.size());
    std::string line = absl::StrCat(
        "{\"time\":\"", Iso8601Utc(msg.time), "\",\"level\":", nlohmann::json(level).dump(),
        ",\"logger\":", nlohmann::json(logger.empty() ? "main" : logger).dump());
    if (logger == kRequestLogger) {
      absl::StrAppend(&line, ",", payload, "}\n");
    } else {
      absl::StrAppend(&line, ",\"msg\":",
                      nlohmann::json(payload)
                          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                      "}\n");
    }
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::string Fixed(double v) { return absl::StrFormat("%.6f", v); }

}  // namespace

absl::Status ConfigureLogging(LogFormat format, const std::string& level) {
  const spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off) {
    return absl::InvalidArgumentError(absl::StrCat("--log-level: unknown level \"", level, "\""));
  }
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto main_logger = std::make_shared<spdlog::logger>("", sink);
  auto request_logger = std::make_shared<spdlog::logger>(kRequestLogger, sink);
  json_mode = format == LogFormat::kJson;
  if (json_mode) {
    sink->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%S.%eZ %L %v", spdlog::pattern_time_type::utc));
  }
  for (const auto& l : {main_logger, request_logger}) {
    l->set_level(lvl);
    l->flush_on(spdlog::level::info);
  }
  spdlog::drop(kRequestLogger);
  spdlog::register_logger(request_logger);
  spdlog::set_default_logger(main_logger);
  return absl::OkStatus();
}

std::string FormatRequestText(const RequestLogRecord& r) {
  std::string s = absl::StrCat(
      "request id=", r.id, " method=", r.method, " code=", r.code,
      " finish_reason=", r.finish_reason, " prompt_tokens=", r.prompt_tokens,
      " generated_tokens=", r.generated_tokens, " queue_s=", Fixed(r.queue_seconds),
      " ttft_s=", Fixed(r.first_token_seconds), " total_s=", Fixed(r.total_seconds));
  if (!r.message.empty()) absl::StrAppend(&s, " message=", nlohmann::json(r.message).dump());
  return s;
}

std::string FormatRequestJsonFields(const RequestLogRecord& r) {
  nlohmann::ordered_json j;
  j["event"] = "request_finished";
  j["id"] = r.id;
  j["method"] = r.method;
  j["code"] = r.code;
  j["finish_reason"] = r.finish_reason;
  j["prompt_tokens"] = r.prompt_tokens;
  j["generated_tokens"] = r.generated_tokens;
  j["queue_s"] = r.queue_seconds;
  j["ttft_s"] = r.first_token_seconds;
  j["total_s"] = r.total_seconds;
  if (!r.message.empty()) j["message"] = r.message;
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.substr(1, s.size() - 2);  // drop the braces
}

void LogRequest(const RequestLogRecord& r) {
  std::shared_ptr<spdlog::logger> logger = spdlog::get(kRequestLogger);
  if (logger == nullptr) logger = spdlog::default_logger();
  const auto level = r.code == "OK" ? spdlog::level::info : spdlog::level::warn;
  if (json_mode && logger->name() == kRequestLogger) {
    logger->log(level, "{}", FormatRequestJsonFields(r));
  } else {
    logger->log(level, "{}", FormatRequestText(r));
  }
}

}  // namespace deltaserve
