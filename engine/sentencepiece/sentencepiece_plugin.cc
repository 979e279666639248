// libdeltaserve_sentencepiece.so: the only code that uses libsentencepiece. It implements the
// SentencePieceModel interface over SentencePieceProcessor and exports one extern "C" entry
// point; engine/sentencepiece_loader.cc opens it with RTLD_LOCAL | RTLD_DEEPBIND (see
// engine/sentencepiece_wrapper.h for why). Includes nothing but the SentencePiece header, the
// interface header and std headers -- never Abseil.
#include <sentencepiece_processor.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sentencepiece_wrapper.h"

namespace deltaserve {
namespace {

class SentencePieceModelImpl final : public SentencePieceModel {
 public:
  bool Load(const std::string& path, std::string* error) {
    const sentencepiece::util::Status status = processor_.Load(path);
    if (!status.ok()) {
      *error = status.ToString();
      return false;
    }
    if (processor_.GetPieceSize() <= 0) {
      *error = "the model has no pieces";
      return false;
    }
    return true;
  }

  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const override {
    ids->clear();
    const sentencepiece::util::Status status = processor_.Encode(text, ids);
    if (!status.ok()) {
      *error = status.ToString();
      return false;
    }
    return true;
  }

  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const override {
    text->clear();
    const sentencepiece::util::Status status = processor_.Decode(ids, text);
    if (!status.ok()) {
      *error = status.ToString();
      return false;
    }
    return true;
  }

  int piece_size() const override { return processor_.GetPieceSize(); }
  const std::string& IdToPiece(int id) const override { return processor_.IdToPiece(id); }

  PieceKind Kind(int id) const override {
    if (processor_.IsByte(id)) return PieceKind::kByte;
    if (processor_.IsControl(id)) return PieceKind::kControl;
    if (processor_.IsUnknown(id)) return PieceKind::kUnknown;
    if (processor_.IsUnused(id)) return PieceKind::kUnused;
    return PieceKind::kNormal;
  }

  int bos_id() const override { return processor_.bos_id(); }
  int eos_id() const override { return processor_.eos_id(); }
  int unk_id() const override { return processor_.unk_id(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace
}  // namespace deltaserve

extern "C" __attribute__((visibility("default"))) deltaserve::SentencePieceModel*
DeltaserveSentencePieceLoad(const char* path, std::string* error) {
  auto model = std::make_unique<deltaserve::SentencePieceModelImpl>();
  if (!model->Load(path, error)) return nullptr;
  return model.release();
}
