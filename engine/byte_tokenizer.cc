// ByteTokenizer implementation (see byte_tokenizer.h).
#include "engine/byte_tokenizer.h"

#include "absl/strings/str_cat.h"

namespace deltaserve {

ByteTokenizer::ByteTokenizer() {
  for (int i = 0; i < 256; ++i) bytes_[i] = static_cast<char>(i);
}

absl::StatusOr<std::vector<int32_t>> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

absl::StatusOr<std::string> ByteTokenizer::Decode(std::span<const int32_t> ids) const {
  std::string text;
  text.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= kVocabSize) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " at position ", i,
                                                     " is outside the byte vocabulary [0, ",
                                                     kVocabSize, ")"));
    }
    if (id < 256) text.push_back(bytes_[id]);
  }
  return text;
}

std::string_view ByteTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= 256) return {};
  return std::string_view(&bytes_[id], 1);
}

}  // namespace deltaserve
