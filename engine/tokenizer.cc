// Tokenizer::Load: picks the tokenizer a model directory's config.json names and checks it against
// the config (vocabulary size, BOS/EOS ids), so a mismatched tokenizer fails at start-up instead of
// producing garbage text.
#include "engine/tokenizer.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/byte_tokenizer.h"
#include "engine/sentencepiece_tokenizer.h"

namespace deltaserve {
namespace {

// Checks that `path` is a readable regular file, with a message naming it otherwise.
absl::Status CheckReadableFile(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat("tokenizer file '", path, "' does not exist"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer file '", path, "' is not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot read tokenizer file '", path, "': ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// A config id (>= 0) must be the tokenizer's own; -1 means the model uses none.
absl::Status CheckSpecialId(const char* key, int config_id, int tokenizer_id,
                            const std::string& source) {
  if (config_id < 0 || config_id == tokenizer_id) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "config.json ", key, " is ", config_id, " but the tokenizer (", source, ") has ",
      tokenizer_id < 0 ? std::string("none") : absl::StrCat(tokenizer_id)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir,
                                                           const ModelConfig& config) {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string source;
  switch (config.tokenizer_type) {
    case TokenizerType::kByte:
      tokenizer = std::make_unique<ByteTokenizer>();
      source = "built-in byte tokenizer";
      break;
    case TokenizerType::kSentencePiece: {
      if (config.tokenizer_file.empty()) {
        return absl::InvalidArgumentError(
            "config.json tokenizer.file is empty; a SentencePiece model needs one");
      }
      const std::filesystem::path file(config.tokenizer_file);
      const std::string path =
          file.is_absolute() ? file.string() : (std::filesystem::path(model_dir) / file).string();
      if (absl::Status s = CheckReadableFile(path); !s.ok()) return s;
      absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> sp =
          SentencePieceTokenizer::Load(path);
      if (!sp.ok()) return sp.status();
      tokenizer = *std::move(sp);
      source = absl::StrCat("SentencePiece model '", path, "'");
      break;
    }
  }
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError("config.json tokenizer.type is not a known tokenizer");
  }
  if (tokenizer->vocab_size() != config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json vocab_size is ", config.vocab_size, " but the tokenizer (",
                     source, ") has ", tokenizer->vocab_size(), " tokens"));
  }
  if (absl::Status s =
          CheckSpecialId("bos_token_id", config.bos_token_id, tokenizer->bos_id(), source);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckSpecialId("eos_token_id", config.eos_token_id, tokenizer->eos_id(), source);
      !s.ok()) {
    return s;
  }
  return tokenizer;
}

}  // namespace deltaserve
