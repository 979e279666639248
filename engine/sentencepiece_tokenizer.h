// SentencePieceTokenizer: the Tokenizer of SentencePiece models (Llama-2 family), backed by
// libsentencepiece through the std-only SentencePieceModel facade (sentencepiece_wrapper.h).
//
// Encode and Decode are the library's own. TokenBytes(id) is what the token appends to a running
// text when it is not the first token:
//   - normal and user-defined pieces: the piece with every U+2581 ("\u2581") replaced by a space;
//   - byte-fallback pieces "<0xAB>": the single byte 0xAB;
//   - control pieces (<s>, </s>, ...): nothing;
//   - the unknown piece: its decoded surface (by default " \u2047 ").
// The leading-space rule: with the model's dummy prefix, Decode drops the space that the first
// piece of a text starts with ("\u2581Hello" decodes to "Hello" at the start of a text, to
// " Hello" after other text). TokenBytes never drops it, so for a whole text
//   concat(TokenBytes(ids)) == Decode(ids) with one leading space added back when Decode dropped it;
// for tokens that continue a text (a generation after its prompt) the concatenation is exact.
// Decode also replaces a byte-fallback sequence that is not valid UTF-8 by U+FFFD, whereas
// TokenBytes yields the raw bytes (a streaming consumer holds back incomplete UTF-8).
//
// Thread-safety: immutable after Load; all methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sentencepiece_wrapper.h"
#include "engine/tokenizer.h"

namespace deltaserve {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads a serialized SentencePiece model; errors name `path`.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path);

  int vocab_size() const override { return static_cast<int>(token_bytes_.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const override;
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const override;
  std::string_view TokenBytes(int32_t id) const override;

  // The piece string of `id` (e.g. "\u2581the", "<0x41>"); empty outside the vocabulary.
  std::string_view Piece(int32_t id) const;

 private:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> model,
                         std::vector<std::string> token_bytes);

  std::unique_ptr<SentencePieceModel> model_;
  std::vector<std::string> token_bytes_;  // per id, see the file comment
  int bos_id_ = -1;
  int eos_id_ = -1;
};

}  // namespace deltaserve
