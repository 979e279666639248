// CreateModelRunner: builds the ModelRunner a server or tool asked for (CPU or CUDA) from a model
// directory, with a state pool sized by slot count or by a memory budget.
// Thread-safety: a plain function; the runner it returns follows ModelRunner's rules.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model_runner.h"
#include "engine/state_layout.h"

namespace deltaserve {

// Products of the CUDA backend's chunked GDN-2 prefill (cuda::Gdn2PrefillPrecision): kFp32
// (3xTF32, fp32-level), kTf32 (single TF32 products, under 1e-3 relative on the recurrence
// outputs) or kBf16 (bf16 products on a bf16 workspace, a few 1e-3 relative, the fastest on long
// prompts; bench/NOTES.md). The CPU backend computes in fp32 whichever is chosen.
enum class PrefillPrecision { kFp32, kTf32, kBf16 };

struct RunnerOptions {
  std::string backend = "cpu";                // "cpu" | "cuda"
  std::string model_dir;                      // holds config.json and model.safetensors (required)
  StateDtype state_dtype = StateDtype::kF32;  // storage of the recurrent states
  std::optional<StateDtype> ring_dtype;       // storage of the SWA rings (unset: state_dtype)
  int num_slots = 0;                          // > 0: exactly this many slots
  int64_t pool_bytes = 0;          // used when num_slots == 0: slots = pool_bytes / slot bytes,
                                   // which must give >= 1
  int threads = 0;                 // CPU backend threads (0: all hardware threads)
  int64_t max_step_tokens = 8192;  // largest number of tokens one Step may carry (>= 1)
  int device = 0;                  // CUDA device ordinal
  PrefillPrecision prefill_precision = PrefillPrecision::kFp32;
};

// "f32" / "fp32" / "float32" -> kF32, "bf16" / "bfloat16" -> kBF16; anything else is an error.
absl::StatusOr<StateDtype> ParseStateDtype(const std::string& name);

// "state" -> unset (the rings follow the state dtype); otherwise as ParseStateDtype.
absl::StatusOr<std::optional<StateDtype>> ParseRingDtype(const std::string& name);

// "fp32" / "f32" -> kFp32, "tf32" -> kTf32, "bf16" -> kBf16; anything else is an error.
absl::StatusOr<PrefillPrecision> ParsePrefillPrecision(const std::string& name);

// The number of slots `options` asks for, for a model whose slot takes `slot_bytes`.
absl::StatusOr<int> ResolveNumSlots(const RunnerOptions& options, size_t slot_bytes);

absl::StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& options);

}  // namespace deltaserve
