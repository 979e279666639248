// CreateCudaRunnerFromOptions (see cuda_runner_factory.h).
#include "engine/cuda/cuda_runner_factory.h"

#include <algorithm>
#include <utility>

#include "engine/cuda/cuda_model_runner.h"

namespace deltaserve {

cuda::Gdn2PrefillPrecision CudaPrefillPrecision(PrefillPrecision p) {
  switch (p) {
    case PrefillPrecision::kTf32:
      return cuda::Gdn2PrefillPrecision::kTf32;
    case PrefillPrecision::kBf16:
      return cuda::Gdn2PrefillPrecision::kBf16;
    case PrefillPrecision::kFp32:
      break;
  }
  return cuda::Gdn2PrefillPrecision::kFp32;
}

absl::StatusOr<std::unique_ptr<ModelRunner>> CreateCudaRunnerFromOptions(
    const RunnerOptions& options, int num_slots) {
  CudaRunnerOptions o;
  o.state_dtype = options.state_dtype;
  o.ring_dtype = options.ring_dtype;
  o.num_slots = num_slots;
  o.max_step_tokens = options.max_step_tokens;
  o.device = options.device;
  o.prefill_precision = CudaPrefillPrecision(options.prefill_precision);
  // Decode passes carry at most one token per sequence; graphs up to 256 sequences.
  o.max_rows = 256;
  absl::StatusOr<std::unique_ptr<CudaModelRunner>> r =
      CudaModelRunner::Load(options.model_dir, o);
  if (!r.ok()) return r.status();
  return std::unique_ptr<ModelRunner>(*std::move(r));
}

}  // namespace deltaserve
