// SentencePieceTokenizer implementation (see sentencepiece_tokenizer.h). Includes Abseil, so it
// must never include sentencepiece_processor.h; the library is reached through
// sentencepiece_wrapper.h.
#include "engine/sentencepiece_tokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"

namespace deltaserve {
namespace {

constexpr absl::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// "<0xAB>" -> 0xAB; -1 when `piece` is not of that form.
int ParseBytePiece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || !piece.ends_with(">")) return -1;
  int value = 0;
  if (!absl::SimpleHexAtoi(absl::string_view(piece.data() + 3, 2), &value) || value < 0 ||
      value > 255) {
    return -1;
  }
  return value;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> model,
                                               std::vector<std::string> token_bytes)
    : model_(std::move(model)),
      token_bytes_(std::move(token_bytes)),
      bos_id_(model_->bos_id()),
      eos_id_(model_->eos_id()) {}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& path) {
  std::string error;
  std::unique_ptr<SentencePieceModel> model = SentencePieceModel::Load(path, &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load SentencePiece model '", path, "': ", error));
  }
  const int n = model->piece_size();
  std::vector<std::string> token_bytes(n);
  for (int id = 0; id < n; ++id) {
    const std::string& piece = model->IdToPiece(id);
    switch (model->Kind(id)) {
      case SentencePieceModel::PieceKind::kControl:
        break;
      case SentencePieceModel::PieceKind::kByte: {
        const int byte = ParseBytePiece(piece);
        if (byte < 0) {
          return absl::InvalidArgumentError(absl::StrCat("SentencePiece model '", path,
                                                         "': byte piece ", id, " is '", piece,
                                                         "', expected the form <0xAB>"));
        }
        token_bytes[id] = std::string(1, static_cast<char>(byte));
        break;
      }
      case SentencePieceModel::PieceKind::kUnknown: {
        // The library substitutes a configurable surface; ask it rather than guess.
        if (!model->Decode({id}, &token_bytes[id], &error)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "SentencePiece model '", path, "': cannot decode the unknown piece: ", error));
        }
        break;
      }
      case SentencePieceModel::PieceKind::kNormal:
      case SentencePieceModel::PieceKind::kUnused:
        token_bytes[id] = absl::StrReplaceAll(piece, {{kSpaceSymbol, " "}});
        break;
    }
  }
  return std::unique_ptr<SentencePieceTokenizer>(
      new SentencePieceTokenizer(std::move(model), std::move(token_bytes)));
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(std::string_view text) const {
  std::vector<int> ids;
  std::string error;
  if (!model_->Encode(text, &ids, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece encode failed: ", error));
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(std::span<const int32_t> ids) const {
  std::vector<int> in;
  in.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ",
                                                     vocab_size(), ")"));
    }
    in.push_back(ids[i]);
  }
  std::string text;
  std::string error;
  if (!model_->Decode(in, &text, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece decode failed: ", error));
  }
  return text;
}

std::string_view SentencePieceTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return token_bytes_[id];
}

std::string_view SentencePieceTokenizer::Piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return model_->IdToPiece(id);
}

}  // namespace deltaserve
