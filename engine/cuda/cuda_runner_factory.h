// CreateCudaRunnerFromOptions: the CUDA branch of CreateModelRunner (engine/runner_factory.cc),
// kept here so that file needs only one call under DELTASERVE_WITH_CUDA.
// Thread-safety: a plain function.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/model_runner.h"
#include "engine/runner_factory.h"

namespace deltaserve {

// Loads options.model_dir onto GPU options.device with `num_slots` slots.
absl::StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunnerFromOptions(
    const RunnerOptions& options, int num_slots);

}  // namespace deltaserve
