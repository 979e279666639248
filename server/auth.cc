// ApiKeyAuth: bearer-token check against a key list (see auth.h).
#include "server/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace deltaserve {
namespace {

// Constant-time in the content of the strings (the length of `a` may leak, not the key).
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

absl::StatusOr<ApiKeyAuth> ApiKeyAuth::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--api-key-file: cannot read ", path));
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    std::string key(absl::StripAsciiWhitespace(line));
    if (key.empty() || key[0] == '#') continue;
    keys.push_back(std::move(key));
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--api-key-file: ", path, " holds no key"));
  }
  return ApiKeyAuth(std::move(keys));
}

grpc::Status ApiKeyAuth::CheckHeader(const std::string* authorization) const {
  if (!enabled()) return grpc::Status::OK;
  if (authorization == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing `authorization: Bearer <key>` metadata");
  }
  constexpr char kPrefix[] = "Bearer ";
  if (!absl::StartsWithIgnoreCase(*authorization, kPrefix)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization metadata must be `Bearer <key>`");
  }
  const std::string presented(
      absl::StripAsciiWhitespace(authorization->substr(sizeof(kPrefix) - 1)));
  bool ok = false;
  for (const std::string& key : keys_) ok |= ConstantTimeEquals(presented, key);
  if (!ok) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid API key");
  return grpc::Status::OK;
}

grpc::Status ApiKeyAuth::Check(const grpc::ServerContext& context) const {
  if (!enabled()) return grpc::Status::OK;
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return CheckHeader(nullptr);
  const std::string value(it->second.data(), it->second.size());
  return CheckHeader(&value);
}

}  // namespace deltaserve
