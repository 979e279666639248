// SentencePieceModel: a thin, std-only facade over libsentencepiece's SentencePieceProcessor.
//
// Why it exists: sentencepiece_processor.h (0.1.97) declares `namespace absl { using
// std::string_view; }`, which collides with Abseil's own absl::string_view. So the library header
// is included by exactly one translation unit, sentencepiece_wrapper.cc, which includes nothing
// else but std headers; everything else (SentencePieceTokenizer, which uses Abseil) talks to the
// library through this header, which exposes std types only. Never include Abseil here.
//
// Thread-safety: immutable after Load; const methods are thread-safe (SentencePieceProcessor's
// const methods are).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace deltaserve {

class SentencePieceModel {
 public:
  enum class PieceKind { kNormal, kUnknown, kControl, kUnused, kByte };

  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  // Loads a serialized model file. On failure returns null and sets *error to the library's
  // message (which does not always name the file; callers add it).
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);

  // Text to ids (no BOS/EOS added). On failure returns false and sets *error.
  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const;
  // Ids to text with the library's decoder (leading-space rule, byte-fallback merging, unknown
  // surface). Ids must be in [0, piece_size()). On failure returns false and sets *error.
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;

  int piece_size() const;
  // The piece string of `id` in [0, piece_size()), e.g. "\u2581the", "<0x41>", "<s>".
  const std::string& IdToPiece(int id) const;
  PieceKind Kind(int id) const;
  int bos_id() const;  // -1 when the model defines none
  int eos_id() const;  // -1 when the model defines none
  int unk_id() const;

 private:
  struct Impl;
  explicit SentencePieceModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace deltaserve
