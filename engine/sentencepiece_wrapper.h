// SentencePieceModel: a std-only interface to libsentencepiece's SentencePieceProcessor.
//
// Why it exists -- two traps of Debian's libsentencepiece 0.1.97:
//  1. Its header declares `namespace absl { using std::string_view; }`, which collides with
//     Abseil's own absl::string_view, so it cannot share a translation unit with Abseil or gRPC.
//  2. The shared library bundles its own (older) protobuf-lite and exports those symbols. Linked
//     into a process that also loads the system libprotobuf (gRPC does), the two copies interpose
//     each other's symbols and the process crashes while loading.
// So the library is used only by a small plugin, libdeltaserve_sentencepiece.so
// (engine/sentencepiece/), which this header's Load() opens with dlopen(RTLD_LOCAL |
// RTLD_DEEPBIND): the plugin and libsentencepiece resolve their symbols among themselves first,
// and nothing of theirs enters the process's global symbol scope. No deltaserve library links
// libsentencepiece. Everything crossing the boundary is a std type (one libstdc++ serves both
// sides). Never include Abseil here.
//
// Thread-safety: implementations are immutable after Load; const methods are thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace deltaserve {

class SentencePieceModel {
 public:
  enum class PieceKind { kNormal, kUnknown, kControl, kUnused, kByte };

  virtual ~SentencePieceModel() = default;

  // Loads a serialized model file through the plugin (opened once per process, never closed).
  // On failure returns null and sets *error (the plugin cannot be found or loaded, or the
  // library's own message, which does not always name the file; callers add it).
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);

  // Text to ids (no BOS/EOS added). On failure returns false and sets *error.
  virtual bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const = 0;
  // Ids to text with the library's decoder (leading-space rule, byte-fallback merging, unknown
  // surface). Ids must be in [0, piece_size()). On failure returns false and sets *error.
  virtual bool Decode(const std::vector<int>& ids, std::string* text,
                      std::string* error) const = 0;

  virtual int piece_size() const = 0;
  // The piece string of `id` in [0, piece_size()), e.g. "\u2581the", "<0x41>", "<s>".
  virtual const std::string& IdToPiece(int id) const = 0;
  virtual PieceKind Kind(int id) const = 0;
  virtual int bos_id() const = 0;  // -1 when the model defines none
  virtual int eos_id() const = 0;  // -1 when the model defines none
  virtual int unk_id() const = 0;
};

// The plugin's entry point (extern "C", found with dlsym): loads `path`; null and *error on
// failure. The caller owns the result.
using SentencePieceLoadFn = SentencePieceModel* (*)(const char* path, std::string* error);
inline constexpr char kSentencePieceLoadSymbol[] = "DeltaserveSentencePieceLoad";
inline constexpr char kSentencePiecePluginName[] = "libdeltaserve_sentencepiece.so";

}  // namespace deltaserve
