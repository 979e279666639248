// SafetensorsFile: a read-only, memory-mapped safetensors file, validated on open.
//
// File format: 8-byte little-endian header length N, N bytes of JSON header
// {"<name>": {"dtype": "F32"|"BF16"|"F16", "shape": [...], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {...} (optional)}, then the data section; offsets are relative to its start.
// Open() checks: header length against the file size, JSON syntax, every entry's dtype, shape and
// offsets (within the data section, end - begin == numel * dtype size, no two tensors
// overlapping). Every error names the file and, where there is one, the tensor.
//
// Thread-safety: immutable after Open; TensorView pointers stay valid while the file object lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace deltaserve {

enum class DType { kF32, kBF16, kF16 };

size_t DTypeBytes(DType d);
const char* DTypeName(DType d);  // "F32", "BF16", "F16"

// Shape as text, e.g. "[2048, 1, 4]".
std::string ShapeString(std::span<const int64_t> shape);

// A typed, non-owning view of one tensor's bytes (row-major, contiguous).
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeBytes(dtype); }
  // Converts to fp32 into `out` (numel() entries).
  void ToFloat(std::span<float> out) const;
  std::vector<float> ToFloatVector() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors by name (sorted).
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string path_;
  int fd_ = -1;
  const std::byte* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Half-precision conversions (round to nearest even on the way down).
float Bf16ToFloat(uint16_t v);
uint16_t FloatToBf16(float f);
float F16ToFloat(uint16_t v);

}  // namespace deltaserve
