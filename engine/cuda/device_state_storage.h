// DeviceStateStorage: a state pool's slots in GPU memory (the CUDA backend's StateStorage), laid
// out per StateLayout, one contiguous allocation of num_slots * slot_bytes. Every operation is
// enqueued on the runner's stream (so it is ordered with model steps) and the host-facing ones
// wait for completion before returning.
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

  // Device address of the pool (slot i at data() + i * slot_bytes()).
  std::byte* data() const { return data_; }
  size_t slot_bytes() const { return layout_.slot_bytes(); }

 private:
  DeviceStateStorage(const StateLayout& layout, int num_slots, std::byte* data,
                     cudaStream_t stream);
  absl::Status CheckSlot(int slot, const char* what) const;

  StateLayout layout_;
  int num_slots_;
  std::byte* data_;
  cudaStream_t stream_;
};

}  // namespace deltaserve
