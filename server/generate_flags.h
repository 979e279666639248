// Flags of `deltaserve generate`: the command line parsed into validated GenerateOptions.
//
// Syntax: --name=value or --name value; booleans are a bare --name. --stop may be repeated.
// Unknown flags, missing values, malformed numbers and out-of-range values are errors whose
// message names the flag. Checks that need the model (prompt ids < vocab_size) happen later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runner_factory.h"
#include "engine/sampling_params.h"
#include "engine/state_layout.h"

namespace deltaserve {

struct GenerateOptions {
  std::string model_dir;                         // --model, required
  std::optional<std::string> prompt;             // --prompt; exactly one of prompt /
  std::optional<std::vector<int32_t>> prompt_ids;  //   --prompt-ids (comma-separated ids)
  int32_t max_new_tokens = 64;                   // --max-new-tokens, >= 1
  SamplingParams sampling;                       // --temperature (1), --seed (0), --top-k (0),
                                                 // --top-p (1), --min-p (0),
                                                 // --repetition-penalty (1)
  std::vector<std::string> stop;                 // --stop, repeatable, non-empty strings
  bool ignore_eos = false;                       // --ignore-eos
  std::string backend = "cpu";                   // --backend cpu|cuda
  StateDtype state_dtype = StateDtype::kF32;     // --state-dtype f32|bf16
  std::optional<StateDtype> ring_dtype;          // --ring-dtype state|f32|bf16 (state: unset)
  // --prefill-precision fp32|tf32|bf16
  PrefillPrecision prefill_precision = PrefillPrecision::kFp32;
  int threads = 0;                               // --threads, >= 0 (0: all hardware threads)
  bool print_ids = false;                        // --print-ids
  bool no_bos = false;                           // --no-bos
};

struct GenerateFlagsResult {
  GenerateOptions options;
  bool help = false;  // --help / -h: print GenerateUsage() and exit 0
};

// `args` excludes the program name and the subcommand.
absl::StatusOr<GenerateFlagsResult> ParseGenerateFlags(const std::vector<std::string>& args);

// The help text: every flag with its default.
std::string GenerateUsage();

}  // namespace deltaserve
