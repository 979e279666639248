// SwapStore: host copies of swapped-out slots. SwapOut copies a slot's bytes into a host buffer
// (StateStorage::CopyToHost) and returns a handle; SwapIn writes them back into any slot of the
// same layout (CopyFromHost) and frees the handle. Buffers are recycled, so steady-state
// preemption does not allocate. At most `max_entries` copies are held at once.
//
// Thread-safety: none; owned by the engine thread.
#pragma once

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/state_storage.h"

namespace deltaserve {

class SwapStore {
 public:
  SwapStore(size_t bytes_per_slot, int max_entries)
      : bytes_per_slot_(bytes_per_slot), max_entries_(max_entries) {}

  // Copies `slot` of `storage` to host memory. ResourceExhausted when max_entries are held.
  absl::StatusOr<int> SwapOut(StateStorage& storage, int slot);
  // Copies entry `handle` into `slot` and frees the entry (also when the copy fails).
  absl::Status SwapIn(int handle, StateStorage& storage, int slot);
  // Frees entry `handle` without restoring it.
  void Drop(int handle);

  int entries() const { return used_; }
  size_t host_bytes() const { return static_cast<size_t>(used_) * bytes_per_slot_; }

 private:
  size_t bytes_per_slot_;
  int max_entries_;
  std::vector<std::vector<std::byte>> buffers_;
  std::vector<uint8_t> in_use_;
  std::vector<int> free_;
  int used_ = 0;
};

}  // namespace deltaserve
