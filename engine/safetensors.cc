// Safetensors reader (see safetensors.h for the format and the checks).
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/bf16.h"
#include "nlohmann/json.hpp"

namespace deltaserve {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit is 100 MB

}  // namespace

size_t DTypeBytes(DType d) {
  switch (d) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  return 0;
}

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
  }
  return "?";
}

std::string ShapeString(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

float Bf16ToFloat(uint16_t v) { return cpu::Bf16ToFloat(v); }
uint16_t FloatToBf16(float f) { return cpu::FloatToBf16(f); }

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void TensorView::ToFloat(std::span<float> out) const {
  const size_t n = static_cast<size_t>(numel());
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out.data(), data, n * sizeof(float));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        out[i] = Bf16ToFloat(v);
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        out[i] = F16ToFloat(v);
      }
      break;
  }
}

std::vector<float> TensorView::ToFloatVector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  ToFloat(out);
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(f->fd_, &st) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": cannot stat: ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: ", f->size_,
                                            " bytes, shorter than the 8-byte header length"));
  }
  void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, f->fd_, 0);
  if (m == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
  }
  f->map_ = static_cast<const std::byte*>(m);
  if (absl::Status s = f->Parse(); !s.ok()) return s;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Status SafetensorsFile::Parse() {
  uint8_t len_bytes[8];
  std::memcpy(len_bytes, map_, 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > size_ - 8) {
    return absl::DataLossError(absl::StrCat(path_, ": header length ", header_len,
                                            " runs past the end of the file (", size_,
                                            " bytes): truncated or not a safetensors file"));
  }
  if (header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": header length ", header_len, " exceeds 100 MB"));
  }
  const char* hdr = reinterpret_cast<const char*>(map_ + 8);
  Json j;
  try {
    j = Json::parse(hdr, hdr + header_len);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": header is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": header must be a JSON object"));
  }
  const std::byte* data = map_ + 8 + header_len;
  const uint64_t data_size = size_ - 8 - header_len;

  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(path_, ": __metadata__ must be an object"));
      }
      for (auto m = it->begin(); m != it->end(); ++m) {
        metadata_[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      }
      continue;
    }
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor ", name, ": ", why));
    };
    const Json& e = *it;
    if (!e.is_object()) return bad("entry must be an object");
    auto dt = e.find("dtype");
    if (dt == e.end() || !dt->is_string()) return bad("missing string \"dtype\"");
    const std::string dts = dt->get<std::string>();
    TensorView v;
    v.name = name;
    if (dts == "F32") {
      v.dtype = DType::kF32;
    } else if (dts == "BF16") {
      v.dtype = DType::kBF16;
    } else if (dts == "F16") {
      v.dtype = DType::kF16;
    } else {
      return bad(absl::StrCat("unsupported dtype ", dts, " (supported: F32, BF16, F16)"));
    }
    auto sh = e.find("shape");
    if (sh == e.end() || !sh->is_array()) return bad("missing array \"shape\"");
    uint64_t numel = 1;
    for (const Json& d : *sh) {
      if (!d.is_number_unsigned()) return bad(absl::StrCat("shape ", sh->dump(), " is invalid"));
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 40) || (dim != 0 && numel > (uint64_t{1} << 40) / dim)) {
        return bad(absl::StrCat("shape ", sh->dump(), " is too large"));
      }
      numel *= dim;
      v.shape.push_back(static_cast<int64_t>(dim));
    }
    auto off = e.find("data_offsets");
    if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return bad("missing or invalid \"data_offsets\" (want [begin, end])");
    }
    const uint64_t begin = (*off)[0].get<uint64_t>();
    const uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] has begin > end"));
    }
    if (end > data_size) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                              "] run past the end of the data section (", data_size,
                              " bytes): file truncated?"));
    }
    const uint64_t want = numel * DTypeBytes(v.dtype);
    if (end - begin != want) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] hold ", end - begin,
                              " bytes but shape ", ShapeString(v.shape), " of ", dts, " needs ",
                              want));
    }
    v.data = data + begin;
    auto [pos, inserted] = tensors_.emplace(name, std::move(v));
    ranges.push_back({begin, end, &pos->first});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  uint64_t max_end = 0;
  const std::string* max_end_name = nullptr;
  for (const Range& r : ranges) {
    if (r.end == r.begin) continue;  // empty tensors occupy no bytes
    if (max_end_name != nullptr && r.begin < max_end) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": tensor ", *r.name, " overlaps tensor ", *max_end_name, " in the data section"));
    }
    if (r.end > max_end) {
      max_end = r.end;
      max_end_name = r.name;
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve
