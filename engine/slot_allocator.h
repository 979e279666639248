// SlotAllocator: which slots of a StateStorage are in use. The state pool is the pair
// (StateStorage: the bytes, host or device; SlotAllocator: the bookkeeping), so the same
// allocator serves host memory now and device memory later.
//
// Acquire hands out a free slot and resets it (zero state, position 0), so a reused slot never
// carries a previous request's state; AcquireForRestore skips the reset for a slot that is about
// to be overwritten from a swap-out copy. Release returns a slot to the pool. Lowest free index
// first, so slot assignment is deterministic.
//
// Thread-safety: none; owned by the engine thread. Stats are read elsewhere through the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/state_layout.h"
#include "engine/state_storage.h"

namespace deltaserve {

// Number of slots of `layout` that fit in `budget_bytes`, capped at `max_slots` (when > 0).
// InvalidArgument when not even one slot fits (the message names the sizes).
absl::StatusOr<int> SlotsForMemoryBudget(const StateLayout& layout, size_t budget_bytes,
                                         int max_slots = 0);

class SlotAllocator {
 public:
  // `storage` must outlive the allocator.
  explicit SlotAllocator(StateStorage* storage);

  // A free slot, reset; ResourceExhausted when none is free; the storage's error if the reset
  // fails (the slot then stays free).
  absl::StatusOr<int> Acquire();
  // A free slot, not reset: the caller overwrites all of it (CopyFromHost).
  absl::StatusOr<int> AcquireForRestore();
  // Returns `slot` to the pool. Releasing a slot that is not in use is a programmer error.
  void Release(int slot);

  bool in_use(int slot) const { return in_use_[slot] != 0; }
  int slots_total() const { return static_cast<int>(in_use_.size()); }
  int slots_used() const { return used_; }
  int slots_free() const { return slots_total() - used_; }
  size_t bytes_per_slot() const { return storage_->bytes_per_slot(); }
  StateStorage& storage() { return *storage_; }

 private:
  absl::StatusOr<int> Take();

  StateStorage* storage_;
  std::vector<uint8_t> in_use_;
  std::vector<int> free_;  // a min-heap of free slot indices
  int used_ = 0;
};

}  // namespace deltaserve
