// CreateCudaRunnerFromOptions: the CUDA branch of CreateModelRunner (engine/runner_factory.cc),
// kept here so that file needs only one call under DELTASERVE_WITH_CUDA; and the mapping of the
// engine's prefill precision onto the CUDA kernels'.
// Thread-safety: a plain function.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/model_runner.h"
#include "engine/runner_factory.h"
#include "kernels/cuda/gdn2_chunk_prefill.h"

namespace deltaserve {

// The chunked-prefill precision the CUDA kernels take for `p`.
cuda::Gdn2PrefillPrecision CudaPrefillPrecision(PrefillPrecision p);

// Loads options.model_dir onto GPU options.device with `num_slots` slots.
absl::StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunnerFromOptions(
    const RunnerOptions& options, int num_slots);

}  // namespace deltaserve
