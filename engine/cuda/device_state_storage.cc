// DeviceStateStorage implementation (see device_state_storage.h).
#include "engine/cuda/device_state_storage.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/status_util.h"

namespace deltaserve {

absl::StatusOr<std::unique_ptr<DeviceStateStorage>> DeviceStateStorage::Create(
    const StateLayout& layout, int num_slots, cudaStream_t stream) {
  if (num_slots < 1)
    return absl::InvalidArgumentError(absl::StrCat("num_slots (", num_slots, ") must be >= 1"));
  const size_t bytes = static_cast<size_t>(num_slots) * layout.slot_bytes();
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate a state pool of ", num_slots, " slots (", bytes, " bytes) on the GPU"));
  }
  if (absl::Status s = cuda::CudaStatus(cudaMemsetAsync(p, 0, bytes, stream), "zero pool");
      !s.ok()) {
    cudaFree(p);
    return s;
  }
  if (absl::Status s = cuda::CudaStatus(cudaStreamSynchronize(stream), "zero pool"); !s.ok()) {
    cudaFree(p);
    return s;
  }
  return std::unique_ptr<DeviceStateStorage>(
      new DeviceStateStorage(layout, num_slots, static_cast<std::byte*>(p), stream));
}

DeviceStateStorage::DeviceStateStorage(const StateLayout& layout, int num_slots, std::byte* data,
                                       cudaStream_t stream)
    : layout_(layout), num_slots_(num_slots), data_(data), stream_(stream) {}

DeviceStateStorage::~DeviceStateStorage() { cudaFree(data_); }

absl::Status DeviceStateStorage::CheckSlot(int slot, const char* what) const {
  if (slot < 0 || slot >= num_slots_)
    return absl::OutOfRangeError(
        absl::StrCat(what, ": slot ", slot, " is outside [0, ", num_slots_, ")"));
  return absl::OkStatus();
}

DeviceStateStorage::SegmentView DeviceStateStorage::Segment(size_t offset) const {
  const StateSegment& g = layout_.segments()[layout_.SegmentOf(offset)];
  return {data_ + static_cast<size_t>(num_slots_) * g.begin, static_cast<int64_t>(g.bytes),
          g.begin};
}

std::byte* DeviceStateStorage::Address(int slot, size_t offset) const {
  const SegmentView v = Segment(offset);
  return v.base + static_cast<int64_t>(slot) * v.slot_stride + v.Offset(offset);
}

// One copy per segment (19 for gdn2_1.3B): a 2-D copy would merge runs of equal segments, but
// its pitch (a segment times num_slots) exceeds the driver's pitch limit in large pools.
absl::Status DeviceStateStorage::CopySegments(int slot, std::byte* image, bool to_pool) {
  for (const StateSegment& g : layout_.segments()) {
    std::byte* part = Address(slot, g.begin);
    std::byte* img = image + g.begin;
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to_pool ? part : img, to_pool ? img : part, g.bytes,
                                            to_pool ? cudaMemcpyHostToDevice
                                                    : cudaMemcpyDeviceToHost,
                                            stream_));
  }
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::Reset(int slot) {
  if (absl::Status s = CheckSlot(slot, "Reset"); !s.ok()) return s;
  for (const StateSegment& g : layout_.segments())
    DS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(Address(slot, g.begin), 0, g.bytes, stream_));
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::CopyToHost(int slot, std::span<std::byte> dst) {
  if (absl::Status s = CheckSlot(slot, "CopyToHost"); !s.ok()) return s;
  if (dst.size() != slot_bytes())
    return absl::InvalidArgumentError(absl::StrCat("CopyToHost: buffer of ", dst.size(),
                                                   " bytes, slot has ", slot_bytes()));
  if (absl::Status s = CopySegments(slot, dst.data(), false); !s.ok())
    return s;
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::CopyFromHost(int slot, std::span<const std::byte> src) {
  if (absl::Status s = CheckSlot(slot, "CopyFromHost"); !s.ok()) return s;
  if (src.size() != slot_bytes())
    return absl::InvalidArgumentError(absl::StrCat("CopyFromHost: buffer of ", src.size(),
                                                   " bytes, slot has ", slot_bytes()));
  // The copies only read `src`.
  if (absl::Status s = CopySegments(slot, const_cast<std::byte*>(src.data()), true);
      !s.ok())
    return s;
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // `src` may be freed on return
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::CopySlot(int src, int dst) {
  if (absl::Status s = CheckSlot(src, "CopySlot"); !s.ok()) return s;
  if (absl::Status s = CheckSlot(dst, "CopySlot"); !s.ok()) return s;
  if (src == dst) return absl::OkStatus();
  for (const StateSegment& g : layout_.segments())
    DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(Address(dst, g.begin), Address(src, g.begin), g.bytes,
                                            cudaMemcpyDeviceToDevice, stream_));
  return absl::OkStatus();
}

}  // namespace deltaserve
