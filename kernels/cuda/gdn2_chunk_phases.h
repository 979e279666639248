// Internal seam of the chunked GDN-2 prefill (gdn2_chunk_prefill.h is the public contract):
// the workspace layout that phase 1 writes and phase 2 reads, and the launchers of the two
// phases, each in its own file. LaunchGdn2ChunkPrefill validates the arguments and the
// workspace size before it calls any launcher here.
//
// Workspace (f32 units), for a launch of total_tokens rows, HV value heads, chunk C = 64, and
// the launch's precision (every offset below depends on it):
//   rows      [total_tokens * HV][kWsRow]  per (token, value head):
//             [Y (dk) | Qg (dk) | Ktail (dk) | U' (dv) | Aqk row (C)]; f32, or bf16 for
//             Gdn2PrefillPrecision::kBf16 (the same layout in bf16 elements, half the bytes)
//   gamma     [chunk slots * HV][dk]       from GammaBase(); chunk c of sequence s uses chunk
//             slot ChunkSlot(cu, s, c) (distinct over the batch, < num_seqs + total_tokens/C + 1)
//   extra     Phase2ExtraFloats(...) floats from ExtraBase(), owned by phase 2 (none for the
//             kBf16 phase 2)
//   ready     uint32 [chunk slots * HV] from ReadyBase(): per (chunk slot, value head), set to 1 by
//             phase 1 once that chunk's rows and gamma are written, when phase 2 runs beside it.
// Phase 2 may overwrite U' in place (phase 1 of the same launch has finished by then).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#include <cuda_bf16.h>
#endif

#include "absl/status/status.h"
#include "kernels/cuda/gdn2_chunk_prefill.h"

namespace deltaserve::cuda::gdn2_chunk {

inline constexpr int kC = kGdn2PrefillChunk;
inline constexpr int kDk = 128;
inline constexpr int kDv = 128;
inline constexpr int kOffY = 0;
inline constexpr int kOffQg = kDk;
inline constexpr int kOffKt = 2 * kDk;
inline constexpr int kOffU = 3 * kDk;
inline constexpr int kOffA = 3 * kDk + kDv;
inline constexpr int kWsRow = 3 * kDk + kDv + kC;  // 576

inline int64_t ChunkSlotCount(int64_t total_tokens, int num_seqs) {
  return num_seqs + total_tokens / kC + 1;
}
inline int64_t GammaBase(int64_t total_tokens, int num_v_heads, Gdn2PrefillPrecision p) {
  const int64_t row_elems = total_tokens * num_v_heads * kWsRow;  // kWsRow / 2 % 4 == 0
  return p == Gdn2PrefillPrecision::kBf16 ? row_elems / 2 : row_elems;
}
inline int64_t ExtraBase(int64_t total_tokens, int num_seqs, int num_v_heads,
                         Gdn2PrefillPrecision p) {
  return GammaBase(total_tokens, num_v_heads, p) +
         ChunkSlotCount(total_tokens, num_seqs) * num_v_heads * kDk;
}
inline int64_t ReadyWords(int64_t total_tokens, int num_seqs, int num_v_heads) {
  return ChunkSlotCount(total_tokens, num_seqs) * num_v_heads;
}

#ifdef __CUDACC__
__device__ __forceinline__ int64_t ChunkSlot(const int32_t* cu, int s, int c) {
  return static_cast<int64_t>(s) + cu[s] / kC + c;
}

// An input element (Gdn2PrefillArgs::input_type: f32 or bf16) as fp32.
__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
#endif

// Phase 1 (gdn2_chunk_intra.cu): fills rows and gamma for every chunk of the batch. It triggers
// its dependents at once, so a programmatic dependent may start while it runs. With `ready`
// (the zeroed ready region) it also publishes each finished chunk there.
absl::Status LaunchPhase1(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& args,
                          unsigned* ready, cudaStream_t stream);

// Phase 2 for kFp32 / kTf32 (gdn2_chunk_state_pass.cu): from the filled workspace and the slots'
// states, writes o and the final states. With after_phase1 (phase 1 was the launch just before
// on `stream`) the state pass is its programmatic dependent: it reads the slots' states, which
// phase 1 does not write, before it waits for phase 1.
absl::Status LaunchPhase2(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& args,
                          bool after_phase1, cudaStream_t stream);
// Phase 2 for kBf16 (gdn2_chunk_bf16_pass.cu): one pass that writes o and the final states from
// the bf16 workspace rows. With `ready` it runs beside phase 1 (launched after it, on another
// stream) and waits for each chunk's ready word before it reads the chunk.
absl::Status LaunchPhase2Bf16(const Gdn2PrefillShape& shape, const Gdn2PrefillArgs& args,
                              bool after_phase1, const unsigned* ready, cudaStream_t stream);
// Blocks of that pass (one per SM at most): LaunchGdn2ChunkPrefill runs it beside phase 1 only
// when they all fit on the GPU at once with room left for phase 1.
int64_t Phase2Bf16Blocks(const Gdn2PrefillShape& shape, int num_seqs);
// Floats phase 2 needs beyond the gamma region.
int64_t Phase2ExtraFloats(const Gdn2PrefillShape& shape, int64_t total_tokens, int num_seqs,
                          Gdn2PrefillPrecision p);
inline int64_t ReadyBase(const Gdn2PrefillShape& shape, int64_t total_tokens, int num_seqs,
                         Gdn2PrefillPrecision p) {
  return ExtraBase(total_tokens, num_seqs, shape.num_v_heads, p) +
         Phase2ExtraFloats(shape, total_tokens, num_seqs, p);
}

}  // namespace deltaserve::cuda::gdn2_chunk
