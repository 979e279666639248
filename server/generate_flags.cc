// Table-driven parser for `deltaserve generate` flags: one entry per flag with its value
// placeholder, help line and a setter that parses, range-checks and stores the value.
#include "server/generate_flags.h"

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace deltaserve {
namespace {

using Setter = std::function<absl::Status(const std::string& value, GenerateOptions* o)>;

struct FlagSpec {
  const char* name;
  const char* value;  // placeholder in the usage text; nullptr for booleans (bare --name)
  const char* help;
  Setter set;
};

absl::Status BadValue(const char* name, const std::string& value, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", name, ": expected ", expected, ", got \"", value, "\""));
}

// An integer flag in [lo, hi].
template <typename T>
Setter IntFlag(const char* name, T GenerateOptions::*field, int64_t lo, int64_t hi,
               absl::string_view expected) {
  return [=](const std::string& v, GenerateOptions* o) {
    int64_t x = 0;
    if (!absl::SimpleAtoi(v, &x) || x < lo || x > hi) return BadValue(name, v, expected);
    o->*field = static_cast<T>(x);
    return absl::OkStatus();
  };
}

// A float sampling parameter accepted by `ok`.
Setter FloatFlag(const char* name, float SamplingParams::*field, bool (*ok)(float),
                 absl::string_view expected) {
  return [=](const std::string& v, GenerateOptions* o) {
    float x = 0;
    if (!absl::SimpleAtof(v, &x) || !std::isfinite(x) || !ok(x)) {
      return BadValue(name, v, expected);
    }
    o->sampling.*field = x;
    return absl::OkStatus();
  };
}

Setter BoolFlag(bool GenerateOptions::*field) {
  return [field](const std::string&, GenerateOptions* o) {
    o->*field = true;
    return absl::OkStatus();
  };
}

absl::Status SetPromptIds(const std::string& v, GenerateOptions* o) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(v, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id) || id < 0) {
      return BadValue("prompt-ids", v, "comma-separated non-negative token ids, e.g. 1,2,3");
    }
    ids.push_back(id);
  }
  o->prompt_ids = std::move(ids);
  return absl::OkStatus();
}

const std::vector<FlagSpec>& Flags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"model", "DIR", "model directory (config.json, model.safetensors, tokenizer); required",
       [](const std::string& v, GenerateOptions* o) {
         o->model_dir = v;
         return absl::OkStatus();
       }},
      {"prompt", "TEXT", "prompt text (or use --prompt-ids)",
       [](const std::string& v, GenerateOptions* o) {
         o->prompt = v;
         return absl::OkStatus();
       }},
      {"prompt-ids", "IDS", "prompt as comma-separated token ids instead of text, e.g. 72,105",
       SetPromptIds},
      {"max-new-tokens", "N", "tokens to generate at most, >= 1 (default 64)",
       IntFlag("max-new-tokens", &GenerateOptions::max_new_tokens, 1,
               std::numeric_limits<int32_t>::max(), "an integer >= 1")},
      {"temperature", "T", "sampling temperature, >= 0; 0 is greedy (default 1)",
       FloatFlag("temperature", &SamplingParams::temperature, [](float x) { return x >= 0; },
                 "a number >= 0")},
      {"seed", "S", "random seed; the same seed and inputs give the same output (default 0)",
       [](const std::string& v, GenerateOptions* o) {
         uint64_t x = 0;
         if (!absl::SimpleAtoi(v, &x)) return BadValue("seed", v, "a non-negative integer");
         o->sampling.seed = x;
         return absl::OkStatus();
       }},
      {"top-k", "K", "keep the K most likely tokens, >= 0; 0 disables (default 0)",
       [](const std::string& v, GenerateOptions* o) {
         int32_t x = 0;
         if (!absl::SimpleAtoi(v, &x) || x < 0) return BadValue("top-k", v, "an integer >= 0");
         o->sampling.top_k = x;
         return absl::OkStatus();
       }},
      {"top-p", "P", "nucleus sampling mass, in (0, 1]; 1 disables (default 1)",
       FloatFlag("top-p", &SamplingParams::top_p, [](float x) { return x > 0 && x <= 1; },
                 "a number in (0, 1]")},
      {"min-p", "P", "drop tokens below P times the top probability, in [0, 1) (default 0)",
       FloatFlag("min-p", &SamplingParams::min_p, [](float x) { return x >= 0 && x < 1; },
                 "a number in [0, 1)")},
      {"repetition-penalty", "R", "penalty on tokens already seen, > 0; 1 disables (default 1)",
       FloatFlag("repetition-penalty", &SamplingParams::repetition_penalty,
                 [](float x) { return x > 0; }, "a number > 0")},
      {"stop", "STR", "stop when the text contains STR (not printed); repeatable",
       [](const std::string& v, GenerateOptions* o) {
         if (v.empty()) return BadValue("stop", v, "a non-empty string");
         o->stop.push_back(v);
         return absl::OkStatus();
       }},
      {"ignore-eos", nullptr, "keep generating past the end-of-sequence token",
       BoolFlag(&GenerateOptions::ignore_eos)},
      {"backend", "cpu|cuda", "where the model runs (default cpu)",
       [](const std::string& v, GenerateOptions* o) {
         if (v != "cpu" && v != "cuda") return BadValue("backend", v, "cpu or cuda");
         o->backend = v;
         return absl::OkStatus();
       }},
      {"state-dtype", "f32|bf16", "storage of the recurrent states (default f32)",
       [](const std::string& v, GenerateOptions* o) {
         absl::StatusOr<StateDtype> d = ParseStateDtype(v);
         if (!d.ok()) return BadValue("state-dtype", v, "f32 or bf16");
         o->state_dtype = *d;
         return absl::OkStatus();
       }},
      {"ring-dtype", "state|f32|bf16",
       "storage of the SWA rings of hybrid models (default state: as --state-dtype)",
       [](const std::string& v, GenerateOptions* o) {
         absl::StatusOr<std::optional<StateDtype>> d = ParseRingDtype(v);
         if (!d.ok()) return BadValue("ring-dtype", v, "state, f32 or bf16");
         o->ring_dtype = *d;
         return absl::OkStatus();
       }},
      {"prefill-precision", "fp32|tf32|bf16",
       "CUDA chunked-prefill products: fp32-level 3xTF32, single TF32 or bf16 (default fp32)",
       [](const std::string& v, GenerateOptions* o) {
         absl::StatusOr<PrefillPrecision> p = ParsePrefillPrecision(v);
         if (!p.ok()) return BadValue("prefill-precision", v, "fp32, tf32 or bf16");
         o->prefill_precision = *p;
         return absl::OkStatus();
       }},
      {"threads", "N", "CPU threads, >= 0; 0 uses every hardware thread (default 0)",
       IntFlag("threads", &GenerateOptions::threads, 0, 4096, "an integer in [0, 4096]")},
      {"print-ids", nullptr, "after the text, print the generated token ids on one line",
       BoolFlag(&GenerateOptions::print_ids)},
      {"no-bos", nullptr, "do not prepend the model's beginning-of-sequence token",
       BoolFlag(&GenerateOptions::no_bos)},
  };
  return *flags;
}

const FlagSpec* FindFlag(absl::string_view name) {
  for (const FlagSpec& f : Flags()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<GenerateFlagsResult> ParseGenerateFlags(const std::vector<std::string>& args) {
  GenerateFlagsResult result;
  GenerateOptions& o = result.options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      result.help = true;
      return result;
    }
    absl::string_view body = arg;
    if (!absl::ConsumePrefix(&body, "--") || body.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected argument \"", arg, "\" (flags start with --; see deltaserve generate --help)"));
    }
    absl::string_view name = body;
    std::optional<std::string> value;
    if (const size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = body.substr(0, eq);
      value = std::string(body.substr(eq + 1));
    }
    const FlagSpec* flag = FindFlag(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see deltaserve generate --help)"));
    }
    if (flag->value == nullptr) {
      if (value.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value, got \"", *value, "\""));
      }
    } else if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value (", flag->value, ")"));
      }
      value = args[++i];
    }
    if (absl::Status s = flag->set(value.value_or(""), &o); !s.ok()) return s;
  }

  if (o.model_dir.empty()) {
    return absl::InvalidArgumentError("--model is required (the model directory)");
  }
  if (o.prompt.has_value() == o.prompt_ids.has_value()) {
    return absl::InvalidArgumentError("give exactly one of --prompt and --prompt-ids");
  }
  // Backstop: the engine's own ranges (the flag setters above already enforce them).
  if (absl::Status s = o.sampling.Validate(); !s.ok()) return s;
  return result;
}

std::string GenerateUsage() {
  std::string out =
      "Usage: deltaserve generate --model DIR (--prompt TEXT | --prompt-ids IDS) [flags]\n"
      "Generates a continuation of the prompt and streams it to stdout.\n\nFlags:\n";
  auto line = [&out](absl::string_view flag, const char* value, const char* help) {
    std::string lhs = absl::StrCat("  --", flag);
    if (value != nullptr) absl::StrAppend(&lhs, " ", value);
    if (lhs.size() < 28) lhs.resize(28, ' ');
    absl::StrAppend(&out, lhs, " ", help, "\n");
  };
  for (const FlagSpec& f : Flags()) line(f.name, f.value, f.help);
  line("help", nullptr, "print this text");
  return out;
}

}  // namespace deltaserve
