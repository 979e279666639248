// StateStorage: the memory behind a state pool's slots (host memory for the CPU backend,
// device memory for CUDA), laid out per StateLayout. It knows nothing of which slot is in use:
// SlotAllocator (engine thread) hands out indices; the storage only moves bytes.
//
// Thread-safety: called only from the engine thread (or the runner on its behalf). Operations
// on a slot must not race with a model step that touches the same slot; implementations that
// are asynchronous (CUDA) order these operations on the same stream as the steps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/state_layout.h"

namespace deltaserve {

class StateStorage {
 public:
  virtual ~StateStorage() = default;

  virtual const StateLayout& layout() const = 0;
  virtual int num_slots() const = 0;
  size_t bytes_per_slot() const { return layout().slot_bytes(); }

  // Zeroes a slot: zero recurrent state, empty histories, position 0.
  virtual absl::Status Reset(int slot) = 0;
  // Copies a slot's bytes to host memory (`dst.size() == bytes_per_slot()`), e.g. for swap-out.
  virtual absl::Status CopyToHost(int slot, std::span<std::byte> dst) = 0;
  // Overwrites a slot from host bytes previously produced by CopyToHost of the same layout.
  virtual absl::Status CopyFromHost(int slot, std::span<const std::byte> src) = 0;
  // Copies one slot onto another (fork, prefix snapshot).
  virtual absl::Status CopySlot(int src, int dst) = 0;
};

}  // namespace deltaserve
