// SentencePieceModel::Load: finds and opens the libdeltaserve_sentencepiece.so plugin once per
// process and calls its entry point (see sentencepiece_wrapper.h for why the library is isolated).
//
// Where the plugin is looked for, in order: the directory of the running executable, its
// ../lib, then the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache). The handle is never
// closed: models created by the plugin live in its code.
// Thread-safety: Load may be called from any thread; the plugin is opened once (std::call_once).
#include <dlfcn.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "engine/sentencepiece_wrapper.h"

namespace deltaserve {
namespace {

struct Plugin {
  SentencePieceLoadFn load = nullptr;
  std::string error;  // why the plugin could not be opened, when load is null
};

std::vector<std::string> Candidates() {
  std::vector<std::string> paths;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    paths.push_back((exe.parent_path() / kSentencePiecePluginName).string());
    paths.push_back((exe.parent_path().parent_path() / "lib" / kSentencePiecePluginName).string());
  }
  paths.push_back(kSentencePiecePluginName);  // the dynamic loader's search path
  return paths;
}

int OpenFlags() {
  int flags = RTLD_NOW | RTLD_LOCAL;
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  // The sanitizer runtimes refuse RTLD_DEEPBIND; sanitizer builds are engine tests without
  // gRPC, where the plugin's symbols meet no other protobuf.
  flags |= RTLD_DEEPBIND;
#endif
  return flags;
}

Plugin OpenPlugin() {
  Plugin plugin;
  std::string tried;
  for (const std::string& path : Candidates()) {
    if (path.find('/') != std::string::npos && !std::filesystem::exists(path)) {
      tried += "\n  " + path + ": no such file";
      continue;
    }
    void* handle = dlopen(path.c_str(), OpenFlags());
    if (handle == nullptr) {
      const char* why = dlerror();
      tried += "\n  " + path + ": " + (why != nullptr ? why : "dlopen failed");
      continue;
    }
    void* symbol = dlsym(handle, kSentencePieceLoadSymbol);
    if (symbol == nullptr) {
      tried += "\n  " + path + ": no symbol " + kSentencePieceLoadSymbol;
      dlclose(handle);
      continue;
    }
    plugin.load = reinterpret_cast<SentencePieceLoadFn>(symbol);
    return plugin;
  }
  plugin.error = std::string("cannot load the SentencePiece plugin ") + kSentencePiecePluginName +
                 " (it is built next to the deltaserve executables); tried:" + tried;
  return plugin;
}

const Plugin& GetPlugin() {
  static std::once_flag once;
  static Plugin* plugin = nullptr;
  std::call_once(once, [] { plugin = new Plugin(OpenPlugin()); });
  return *plugin;
}

}  // namespace

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  const Plugin& plugin = GetPlugin();
  if (plugin.load == nullptr) {
    *error = plugin.error;
    return nullptr;
  }
  std::string load_error;
  SentencePieceModel* model = plugin.load(path.c_str(), &load_error);
  if (model == nullptr) {
    *error = load_error.empty() ? "the SentencePiece library rejected the file" : load_error;
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(model);
}

}  // namespace deltaserve
