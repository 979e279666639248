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

absl::Status DeviceStateStorage::Reset(int slot) {
  if (absl::Status s = CheckSlot(slot, "Reset"); !s.ok()) return s;
  DS_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(data_ + static_cast<size_t>(slot) * slot_bytes(), 0, slot_bytes(), stream_));
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::CopyToHost(int slot, std::span<std::byte> dst) {
  if (absl::Status s = CheckSlot(slot, "CopyToHost"); !s.ok()) return s;
  if (dst.size() != slot_bytes())
    return absl::InvalidArgumentError(absl::StrCat("CopyToHost: buffer of ", dst.size(),
                                                   " bytes, slot has ", slot_bytes()));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.data(), data_ + static_cast<size_t>(slot) * slot_bytes(),
                                          slot_bytes(), cudaMemcpyDeviceToHost, stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::CopyFromHost(int slot, std::span<const std::byte> src) {
  if (absl::Status s = CheckSlot(slot, "CopyFromHost"); !s.ok()) return s;
  if (src.size() != slot_bytes())
    return absl::InvalidArgumentError(absl::StrCat("CopyFromHost: buffer of ", src.size(),
                                                   " bytes, slot has ", slot_bytes()));
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(data_ + static_cast<size_t>(slot) * slot_bytes(),
                                          src.data(), slot_bytes(), cudaMemcpyHostToDevice,
                                          stream_));
  DS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // `src` may be freed on return
  return absl::OkStatus();
}

absl::Status DeviceStateStorage::CopySlot(int src, int dst) {
  if (absl::Status s = CheckSlot(src, "CopySlot"); !s.ok()) return s;
  if (absl::Status s = CheckSlot(dst, "CopySlot"); !s.ok()) return s;
  if (src == dst) return absl::OkStatus();
  DS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(data_ + static_cast<size_t>(dst) * slot_bytes(),
                                          data_ + static_cast<size_t>(src) * slot_bytes(),
                                          slot_bytes(), cudaMemcpyDeviceToDevice, stream_));
  return absl::OkStatus();
}

}  // namespace deltaserve
