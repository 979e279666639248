// Peers of the streamed GDN-2 recurrence for gdn2_decode_bench.
//
// The tile round trip: the same grid (one block of 128 threads per (batch row, value head)), the
// same slot lookup and the same state traffic as the recurrence (each fp32 [128, 128] tile
// bulk-copied into shared memory, optionally under the L2 evict_last policy, then written back
// in place: write-back stores after an evict_last fetch, else streaming stores), and nothing
// else: no prep kernel, no records, no reductions. Its bandwidth is the ceiling of this access
// pattern at a batch size, against which the recurrence's own time can be read.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace deltaserve::bench {

// Rows whose slot is outside [0, num_slots) are skipped. The tile of head h of a slot starts at
// pool + slot * slot_stride + state_offset + h * 64 KiB (16-byte aligned).
cudaError_t LaunchStateRoundTripPeer(const int32_t* slots, int batch, int heads, void* pool,
                                     int64_t slot_stride, int64_t state_offset, int num_slots,
                                     bool evict_last, cudaStream_t stream);

// The in-place state copy: the same fp32 tiles of the same slots, each 16-byte piece loaded and
// stored straight back by its own thread, 256 threads per 4 KiB (the shape of a copy kernel,
// the fastest of the shapes in state_pattern_bench). Nothing orders a store after any load but
// its own, which a decode step cannot have (its reductions over dk precede its writes), so this
// is what moving these bytes in place costs at best.
cudaError_t LaunchStateInPlaceCopyPeer(const int32_t* slots, int batch, int heads, void* pool,
                                       int64_t slot_stride, int64_t state_offset, int num_slots,
                                       cudaStream_t stream);

}  // namespace deltaserve::bench
