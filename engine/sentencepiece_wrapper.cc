// SentencePieceModel implementation. This is the only translation unit that includes
// sentencepiece_processor.h; it must include nothing but that and std headers (see the header
// comment of sentencepiece_wrapper.h for the reason).
#include "engine/sentencepiece_wrapper.h"

#include <sentencepiece_processor.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace deltaserve {

struct SentencePieceModel::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceModel::SentencePieceModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  auto impl = std::make_unique<Impl>();
  const sentencepiece::util::Status status = impl->processor.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  if (impl->processor.GetPieceSize() <= 0) {
    *error = "the model has no pieces";
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(new SentencePieceModel(std::move(impl)));
}

bool SentencePieceModel::Encode(std::string_view text, std::vector<int>* ids,
                                std::string* error) const {
  ids->clear();
  const sentencepiece::util::Status status = impl_->processor.Encode(text, ids);
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  return true;
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  text->clear();
  const sentencepiece::util::Status status = impl_->processor.Decode(ids, text);
  if (!status.ok()) {
    *error = status.ToString();
    return false;
  }
  return true;
}

int SentencePieceModel::piece_size() const { return impl_->processor.GetPieceSize(); }

const std::string& SentencePieceModel::IdToPiece(int id) const {
  return impl_->processor.IdToPiece(id);
}

SentencePieceModel::PieceKind SentencePieceModel::Kind(int id) const {
  const auto& p = impl_->processor;
  if (p.IsByte(id)) return PieceKind::kByte;
  if (p.IsControl(id)) return PieceKind::kControl;
  if (p.IsUnknown(id)) return PieceKind::kUnknown;
  if (p.IsUnused(id)) return PieceKind::kUnused;
  return PieceKind::kNormal;
}

int SentencePieceModel::bos_id() const { return impl_->processor.bos_id(); }
int SentencePieceModel::eos_id() const { return impl_->processor.eos_id(); }
int SentencePieceModel::unk_id() const { return impl_->processor.unk_id(); }

}  // namespace deltaserve
