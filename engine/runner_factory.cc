// CreateModelRunner (see runner_factory.h).
#include "engine/runner_factory.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/cpu_model.h"
#include "engine/cpu_model_runner.h"
#ifdef DELTASERVE_WITH_CUDA
#include "engine/cuda/cuda_runner_factory.h"
#endif
#include "engine/model_config.h"
#include "engine/model_weights.h"

namespace deltaserve {

absl::StatusOr<StateDtype> ParseStateDtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32") return StateDtype::kF32;
  if (name == "bf16" || name == "bfloat16") return StateDtype::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("state dtype must be \"fp32\" or \"bf16\", got \"", name, "\""));
}

absl::StatusOr<std::optional<StateDtype>> ParseRingDtype(const std::string& name) {
  if (name == "state") return std::optional<StateDtype>();
  absl::StatusOr<StateDtype> d = ParseStateDtype(name);
  if (!d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring dtype must be \"state\", \"fp32\" or \"bf16\", got \"", name, "\""));
  }
  return std::optional<StateDtype>(*d);
}

absl::StatusOr<PrefillPrecision> ParsePrefillPrecision(const std::string& name) {
  if (name == "fp32" || name == "f32") return PrefillPrecision::kFp32;
  if (name == "tf32") return PrefillPrecision::kTf32;
  if (name == "bf16") return PrefillPrecision::kBf16;
  return absl::InvalidArgumentError(absl::StrCat(
      "prefill precision must be \"fp32\", \"tf32\" or \"bf16\", got \"", name, "\""));
}

absl::StatusOr<int> ResolveNumSlots(const RunnerOptions& options, size_t slot_bytes) {
  if (options.num_slots < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_slots (", options.num_slots, ") must be >= 0"));
  }
  if (options.num_slots > 0) return options.num_slots;
  if (options.pool_bytes <= 0) {
    return absl::InvalidArgumentError("set num_slots or a state pool memory budget (pool_bytes)");
  }
  const int64_t slots = options.pool_bytes / static_cast<int64_t>(slot_bytes);
  if (slots < 1) {
    return absl::InvalidArgumentError(absl::StrCat("state pool budget of ", options.pool_bytes,
                                                   " bytes is less than one slot (", slot_bytes,
                                                   " bytes)"));
  }
  if (slots > std::numeric_limits<int>::max()) return std::numeric_limits<int>::max();
  return static_cast<int>(slots);
}

absl::StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const RunnerOptions& options) {
  if (options.model_dir.empty()) return absl::InvalidArgumentError("model_dir is required");
  if (options.max_step_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens (", options.max_step_tokens, ") must be >= 1"));
  }
  absl::StatusOr<ModelConfig> config = ModelConfig::LoadFromDir(options.model_dir);
  if (!config.ok()) return config.status();
  const StateLayout layout(*config, options.state_dtype, options.ring_dtype);
  absl::StatusOr<int> num_slots = ResolveNumSlots(options, layout.slot_bytes());
  if (!num_slots.ok()) return num_slots.status();

  if (options.backend == "cpu") {
    absl::StatusOr<std::unique_ptr<ModelWeights>> weights =
        ModelWeights::Load(*config, options.model_dir);
    if (!weights.ok()) return weights.status();
    absl::StatusOr<std::unique_ptr<CpuModel>> model =
        CpuModel::Create(**weights, options.state_dtype, options.threads, options.ring_dtype);
    if (!model.ok()) return model.status();
    weights->reset();  // the CPU model holds its own fp32 copies
    absl::StatusOr<std::unique_ptr<CpuModelRunner>> runner =
        CpuModelRunner::Create(*std::move(model), *num_slots, options.max_step_tokens);
    if (!runner.ok()) return runner.status();
    return std::unique_ptr<ModelRunner>(*std::move(runner));
  }
  if (options.backend == "cuda") {
#ifdef DELTASERVE_WITH_CUDA
    return CreateCudaRunnerFromOptions(options, *num_slots);
#else
    return absl::UnimplementedError(
        "backend \"cuda\": this build has no CUDA support (configure with DELTASERVE_CUDA=ON)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("backend must be \"cpu\" or \"cuda\", got \"", options.backend, "\""));
}

}  // namespace deltaserve
