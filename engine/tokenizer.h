// Tokenizer: text <-> token ids. Two implementations: a built-in byte-level tokenizer for small
// models (ids 0-255 are the bytes, then <bos>, <eos>) and SentencePiece models (Llama-2 family).
//
// Streaming detokenization is byte-exact: TokenBytes(id) gives the bytes a token contributes
// when it is not the first token of a text, so concatenating TokenBytes of generated tokens
// reproduces Decode of them (SentencePiece's leading-space rule applies only at the very start).
// Special tokens (bos, eos, control) contribute no bytes.
//
// Thread-safety: const methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"

namespace deltaserve {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 when none
  virtual int eos_id() const = 0;  // -1 when none
  // Text to ids, without a BOS (callers prepend bos_id() where the model expects it).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const = 0;
  // Ids to text, as the tokenizer's own decoder would. Ids outside the vocabulary are an error.
  virtual absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const = 0;
  // The bytes token `id` appends to a running text (see the file comment). Empty for specials
  // and for ids outside the vocabulary.
  virtual std::string_view TokenBytes(int32_t id) const = 0;

  // Loads the tokenizer a model directory's config names; errors name the file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir,
                                                         const ModelConfig& config);
};

}  // namespace deltaserve
