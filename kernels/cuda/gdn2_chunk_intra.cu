// Phase 1 of the chunked GDN-2 prefill, version 3; see gdn2_chunk_phases.h for the contract.
#include "kernels/cuda/gdn2_chunk_phases.h"

namespace deltaserve::cuda::gdn2_chunk {

absl::Status LaunchPhase1V3(const Gdn2PrefillShape&, const Gdn2PrefillArgs&, cudaStream_t) {
  return absl::UnimplementedError("gdn2 prefill: phase1_version 3 is not built yet");
}

}  // namespace deltaserve::cuda::gdn2_chunk
