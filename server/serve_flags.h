// Flags of `deltaserve serve`: parsing the command line into a validated ServerConfig.
//
// Syntax: --name=value or --name value; booleans also accept a bare --name (true). Unknown
// flags, missing values and malformed numbers are errors that name the flag.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/server_config.h"

namespace deltaserve {

struct ServeFlagsResult {
  ServerConfig config;
  bool help = false;  // --help was given: print ServeUsage() and exit 0
};

// Engine step defaults of the CUDA backend (--token-budget, --prefill-chunk when not given);
// the CPU backend keeps EngineConfig's. A prefill chunk that is not given never exceeds the
// token budget.
inline constexpr int64_t kCudaTokenBudget = 8192;
inline constexpr int64_t kCudaPrefillChunk = 4096;

// `args` excludes the program name and the subcommand. The returned config is validated
// (ServerConfig::Validate) unless help is set.
absl::StatusOr<ServeFlagsResult> ParseServeFlags(const std::vector<std::string>& args);

// Parses a byte count with an optional suffix K, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti
// (powers of 1024), e.g. "512Mi", "2G", "1048576".
absl::StatusOr<int64_t> ParseByteSize(const std::string& text);

// The help text: every flag with its default.
std::string ServeUsage();

}  // namespace deltaserve
