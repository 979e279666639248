// API-key authentication: a call is admitted when its metadata carries
// `authorization: Bearer <key>` with one of the configured keys. Keys are compared in constant
// time. With no keys configured every call is admitted.
// Thread-safety: immutable after construction.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace deltaserve {

class ApiKeyAuth {
 public:
  ApiKeyAuth() = default;  // authentication off
  explicit ApiKeyAuth(std::vector<std::string> keys) : keys_(std::move(keys)) {}

  // Reads keys from a file: one per line; blank lines and lines starting with '#' are skipped;
  // surrounding whitespace is trimmed. Errors name the file; an empty key set is an error.
  static absl::StatusOr<ApiKeyAuth> FromFile(const std::string& path);

  bool enabled() const { return !keys_.empty(); }
  // OK, or UNAUTHENTICATED with a message that says what is missing.
  grpc::Status Check(const grpc::ServerContext& context) const;
  // The same check on a raw `authorization` header value (nullptr when absent).
  grpc::Status CheckHeader(const std::string* authorization) const;

 private:
  std::vector<std::string> keys_;
};

}  // namespace deltaserve
