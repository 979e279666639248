// SlotAllocator implementation (see slot_allocator.h).
#include "engine/slot_allocator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "absl/strings/str_cat.h"

namespace deltaserve {

absl::StatusOr<int> SlotsForMemoryBudget(const StateLayout& layout, size_t budget_bytes,
                                         int max_slots) {
  const size_t per_slot = layout.slot_bytes();
  if (per_slot == 0) return absl::InvalidArgumentError("state layout has zero bytes per slot");
  const size_t n = budget_bytes / per_slot;
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("state memory budget of ", budget_bytes, " bytes is smaller than one slot (",
                     per_slot, " bytes)"));
  }
  size_t slots = std::min<size_t>(n, static_cast<size_t>(1) << 30);
  if (max_slots > 0) slots = std::min<size_t>(slots, static_cast<size_t>(max_slots));
  return static_cast<int>(slots);
}

SlotAllocator::SlotAllocator(StateStorage* storage) : storage_(storage) {
  const int n = storage_->num_slots();
  in_use_.assign(n, 0);
  free_.reserve(n);
  for (int i = 0; i < n; ++i) free_.push_back(i);
  std::make_heap(free_.begin(), free_.end(), std::greater<int>());
}

absl::StatusOr<int> SlotAllocator::Take() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", slots_total(), " state slots are in use"));
  }
  std::pop_heap(free_.begin(), free_.end(), std::greater<int>());
  const int slot = free_.back();
  free_.pop_back();
  in_use_[slot] = 1;
  ++used_;
  return slot;
}

absl::StatusOr<int> SlotAllocator::Acquire() {
  absl::StatusOr<int> slot = Take();
  if (!slot.ok()) return slot;
  absl::Status reset = storage_->Reset(*slot);
  if (!reset.ok()) {
    Release(*slot);
    return reset;
  }
  return slot;
}

absl::StatusOr<int> SlotAllocator::AcquireForRestore() { return Take(); }

void SlotAllocator::Release(int slot) {
  if (slot < 0 || slot >= slots_total() || !in_use_[slot]) {
    std::fprintf(stderr, "SlotAllocator::Release: slot %d is not in use\n", slot);
    std::abort();
  }
  in_use_[slot] = 0;
  --used_;
  free_.push_back(slot);
  std::push_heap(free_.begin(), free_.end(), std::greater<int>());
}

}  // namespace deltaserve
