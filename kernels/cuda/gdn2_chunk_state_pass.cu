// Phase 2 of the chunked GDN-2 prefill, version 2; see gdn2_chunk_phases.h for the contract.
#include "kernels/cuda/gdn2_chunk_phases.h"

namespace deltaserve::cuda::gdn2_chunk {

int64_t Phase2V2ExtraFloats(const Gdn2PrefillShape&, int64_t, int) { return 0; }

absl::Status LaunchPhase2V2(const Gdn2PrefillShape&, const Gdn2PrefillArgs&, cudaStream_t) {
  return absl::UnimplementedError("gdn2 prefill: phase2_version 2 is not built yet");
}

}  // namespace deltaserve::cuda::gdn2_chunk
