// DeviceStateStorage: a state pool's slots in GPU memory (the CUDA backend's StateStorage), one
// allocation of num_slots * slot_bytes, stored segment-major: for each segment of
// StateLayout::segments() (one per GDN-2 layer, then the position and SWA tail), that segment of
// every slot, slot after slot. So the state of one layer over consecutive slots is one dense
// range, which a decode launch reads faster than the same slots spread over the whole pool
// (bench/NOTES.md, "Slot placement"). Kernels address one segment at a time (Segment()).
// Host-facing copies convert to and from the canonical slot bytes of StateLayout. Every operation
// is enqueued on the runner's stream (so it is ordered with model steps) and the host-facing
// ones wait for completion before returning.
//
// Thread-safety: as StateStorage (engine thread only).
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/state_layout.h"
#include "engine/state_storage.h"
#include "kernels/cuda/cuda_common.h"

namespace deltaserve {

class DeviceStateStorage final : public StateStorage {
 public:
  // Allocates and zeroes the pool. ResourceExhausted if device memory is short.
  static absl::StatusOr<std::unique_ptr<DeviceStateStorage>> Create(const StateLayout& layout,
                                                                    int num_slots,
                                                                    cudaStream_t stream);
  ~DeviceStateStorage() override;

  const StateLayout& layout() const override { return layout_; }
  int num_slots() const override { return num_slots_; }
  absl::Status Reset(int slot) override;
  absl::Status CopyToHost(int slot, std::span<std::byte> dst) override;
  absl::Status CopyFromHost(int slot, std::span<const std::byte> src) override;
  absl::Status CopySlot(int src, int dst) override;

  // One segment of the pool as kernels see a pool: slot s's part of the segment starts at
  // base + s * slot_stride, and canonical slot byte `o` of the segment at offset o - begin.
  struct SegmentView {
    std::byte* base;
    int64_t slot_stride;
    size_t begin;
    // Offset within the segment of canonical slot byte `offset` (which must lie in it).
    int64_t Offset(size_t offset) const { return static_cast<int64_t>(offset - begin); }
  };
  // The segment that holds canonical slot byte `offset` (a region's offset from StateLayout).
  SegmentView Segment(size_t offset) const;
  // Device address of canonical byte `offset` of `slot`.
  std::byte* Address(int slot, size_t offset) const;
  size_t slot_bytes() const { return layout_.slot_bytes(); }

 private:
  DeviceStateStorage(const StateLayout& layout, int num_slots, std::byte* data,
                     cudaStream_t stream);
  absl::Status CheckSlot(int slot, const char* what) const;
  // Copies `slot`'s bytes between the pool and a canonical slot image `image` (host memory),
  // one segment at a time; `to_pool` picks the direction.
  absl::Status CopySegments(int slot, std::byte* image, bool to_pool);

  StateLayout layout_;
  int num_slots_;
  std::byte* data_;
  cudaStream_t stream_;
};

}  // namespace deltaserve
