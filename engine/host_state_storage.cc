// HostStateStorage implementation (see host_state_storage.h).
#include "engine/host_state_storage.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"

namespace deltaserve {

absl::StatusOr<std::unique_ptr<HostStateStorage>> HostStateStorage::Create(
    const StateLayout& layout, int num_slots) {
  if (num_slots < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_slots (", num_slots, ") must be >= 1"));
  }
  const size_t bytes = layout.slot_bytes() * static_cast<size_t>(num_slots);
  void* p = std::aligned_alloc(StateLayout::kRegionAlign, bytes);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes for ", num_slots, " state slots"));
  }
  std::memset(p, 0, bytes);
  return std::unique_ptr<HostStateStorage>(
      new HostStateStorage(layout, num_slots, static_cast<std::byte*>(p)));
}

HostStateStorage::HostStateStorage(const StateLayout& layout, int num_slots, std::byte* data)
    : layout_(layout), num_slots_(num_slots), data_(data) {}

HostStateStorage::~HostStateStorage() { std::free(data_); }

absl::Status HostStateStorage::CheckSlot(int slot, const char* what) const {
  if (slot < 0 || slot >= num_slots_) {
    return absl::OutOfRangeError(
        absl::StrCat(what, ": slot ", slot, " is outside [0, ", num_slots_, ")"));
  }
  return absl::OkStatus();
}

std::byte* HostStateStorage::SlotData(int slot) {
  if (slot < 0 || slot >= num_slots_) std::abort();  // programmer error: callers check first
  return data_ + static_cast<size_t>(slot) * layout_.slot_bytes();
}

absl::Status HostStateStorage::Reset(int slot) {
  if (absl::Status s = CheckSlot(slot, "Reset"); !s.ok()) return s;
  std::memset(SlotData(slot), 0, layout_.slot_bytes());
  return absl::OkStatus();
}

absl::Status HostStateStorage::CopyToHost(int slot, std::span<std::byte> dst) {
  if (absl::Status s = CheckSlot(slot, "CopyToHost"); !s.ok()) return s;
  if (dst.size() != layout_.slot_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyToHost: buffer has ", dst.size(),
                                                   " bytes, a slot has ", layout_.slot_bytes()));
  }
  std::memcpy(dst.data(), SlotData(slot), dst.size());
  return absl::OkStatus();
}

absl::Status HostStateStorage::CopyFromHost(int slot, std::span<const std::byte> src) {
  if (absl::Status s = CheckSlot(slot, "CopyFromHost"); !s.ok()) return s;
  if (src.size() != layout_.slot_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("CopyFromHost: buffer has ", src.size(),
                                                   " bytes, a slot has ", layout_.slot_bytes()));
  }
  std::memcpy(SlotData(slot), src.data(), src.size());
  return absl::OkStatus();
}

absl::Status HostStateStorage::CopySlot(int src, int dst) {
  if (absl::Status s = CheckSlot(src, "CopySlot source"); !s.ok()) return s;
  if (absl::Status s = CheckSlot(dst, "CopySlot destination"); !s.ok()) return s;
  if (src != dst) std::memcpy(SlotData(dst), SlotData(src), layout_.slot_bytes());
  return absl::OkStatus();
}

}  // namespace deltaserve
