// SwapStore implementation (see swap_store.h).
#include "engine/swap_store.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace deltaserve {

absl::StatusOr<int> SwapStore::SwapOut(StateStorage& storage, int slot) {
  if (used_ >= max_entries_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("swap store holds its maximum of ", max_entries_, " slots"));
  }
  int handle;
  if (!free_.empty()) {
    handle = free_.back();
    free_.pop_back();
  } else {
    handle = static_cast<int>(buffers_.size());
    buffers_.emplace_back(bytes_per_slot_);
    in_use_.push_back(0);
  }
  absl::Status s = storage.CopyToHost(slot, buffers_[handle]);
  if (!s.ok()) {
    free_.push_back(handle);
    return s;
  }
  in_use_[handle] = 1;
  ++used_;
  return handle;
}

absl::Status SwapStore::SwapIn(int handle, StateStorage& storage, int slot) {
  if (handle < 0 || handle >= static_cast<int>(buffers_.size()) || !in_use_[handle]) {
    std::fprintf(stderr, "SwapStore::SwapIn: handle %d is not held\n", handle);
    std::abort();
  }
  absl::Status s = storage.CopyFromHost(slot, buffers_[handle]);
  Drop(handle);
  return s;
}

void SwapStore::Drop(int handle) {
  if (handle < 0 || handle >= static_cast<int>(buffers_.size()) || !in_use_[handle]) {
    std::fprintf(stderr, "SwapStore::Drop: handle %d is not held\n", handle);
    std::abort();
  }
  in_use_[handle] = 0;
  --used_;
  free_.push_back(handle);
}

}  // namespace deltaserve
