// HostStateStorage: a state pool's slots in host memory (the CPU backend's StateStorage).
// Slots are contiguous, each layout.slot_bytes() long and StateLayout::kRegionAlign aligned;
// the memory starts zeroed (every slot reset).
//
// Thread-safety: as StateStorage (engine thread only); SlotData pointers stay valid for the
// storage's lifetime.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/state_layout.h"
#include "engine/state_storage.h"

namespace deltaserve {

class HostStateStorage final : public StateStorage {
 public:
  // Fails (ResourceExhausted) if the memory cannot be allocated, InvalidArgument if num_slots < 1.
  static absl::StatusOr<std::unique_ptr<HostStateStorage>> Create(const StateLayout& layout,
                                                                  int num_slots);
  ~HostStateStorage() override;

  const StateLayout& layout() const override { return layout_; }
  int num_slots() const override { return num_slots_; }
  absl::Status Reset(int slot) override;
  absl::Status CopyToHost(int slot, std::span<std::byte> dst) override;
  absl::Status CopyFromHost(int slot, std::span<const std::byte> src) override;
  absl::Status CopySlot(int src, int dst) override;

  // The slot's bytes (for the CPU model). `slot` must be in range (checked).
  std::byte* SlotData(int slot);

 private:
  HostStateStorage(const StateLayout& layout, int num_slots, std::byte* data);
  absl::Status CheckSlot(int slot, const char* what) const;

  StateLayout layout_;
  int num_slots_;
  std::byte* data_;
};

}  // namespace deltaserve
