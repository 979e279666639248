// Server logging through spdlog: one process-wide setup (text or JSON lines on stderr) and the
// one-line-per-request record written when a request finishes.
//
// JSON mode writes one object per line: {"time","level","logger","msg"} for ordinary lines, and
// {"time","level","logger":"request", <the request's fields>} for request records.
// Thread-safety: ConfigureLogging once at start-up, before other threads log; LogRequest from any
// thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "server/server_config.h"

namespace deltaserve {

// Installs the default logger (stderr) and the "request" logger in the given format and level.
absl::Status ConfigureLogging(LogFormat format, const std::string& level);

struct RequestLogRecord {
  std::string id;
  std::string method;         // Generate or Complete
  std::string code;           // gRPC status code name of the call
  std::string finish_reason;  // engine finish reason, or "rejected" when it never ran
  std::string message;        // error message, empty when OK
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double queue_seconds = 0;
  double first_token_seconds = 0;
  double total_seconds = 0;
};

// The record's text form (without timestamp/level), as text mode writes it.
std::string FormatRequestText(const RequestLogRecord& r);
// The record's JSON fields, without the surrounding braces, as JSON mode embeds them.
std::string FormatRequestJsonFields(const RequestLogRecord& r);

// Writes the record through the "request" logger (info when code is OK, warn otherwise).
void LogRequest(const RequestLogRecord& r);

}  // namespace deltaserve
