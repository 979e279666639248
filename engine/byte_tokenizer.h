// ByteTokenizer: the built-in byte-level tokenizer of small models. Ids 0-255 are the raw bytes
// of the UTF-8 text, 256 is <bos>, 257 is <eos> (vocabulary 258). Encode never fails; Decode
// concatenates bytes (specials contribute nothing) and rejects ids outside the vocabulary.
// There is no leading-space rule: TokenBytes concatenation equals Decode exactly.
//
// Thread-safety: immutable after construction; all methods are thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"

namespace deltaserve {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int kBosId = 256;
  static constexpr int kEosId = 257;
  static constexpr int kVocabSize = 258;

  ByteTokenizer();

  int vocab_size() const override { return kVocabSize; }
  int bos_id() const override { return kBosId; }
  int eos_id() const override { return kEosId; }
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const override;
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const override;
  std::string_view TokenBytes(int32_t id) const override;

 private:
  char bytes_[256];  // bytes_[i] == i; TokenBytes views into it
};

}  // namespace deltaserve
