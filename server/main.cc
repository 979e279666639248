// deltaserve: the command-line program. `deltaserve <command> [flags]`; each command is one entry
// of kCommands below, implemented as `int RunXCommand(int argc, char** argv)` (argv[0] is the
// command's name) with its own flag parsing and --help, declared in server/x_command.h.
// Exit codes: a command's own; 2 for an unknown command or a missing one.
#include <cstdio>
#include <cstring>
#include <span>

#include "server/generate_command.h"
#include "server/serve_command.h"

namespace deltaserve {
namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

// To add a command: include its header above and add one line here.
constexpr Command kCommands[] = {
    {"generate", "generate a continuation of a prompt and print it as it is produced",
     RunGenerateCommand},
    {"serve", "serve the model over gRPC with Prometheus metrics until SIGTERM", RunServeCommand},
};

void PrintUsage(std::FILE* f) {
  std::fputs("Usage: deltaserve <command> [flags]\n\nCommands:\n", f);
  for (const Command& c : kCommands) std::fprintf(f, "  %-12s %s\n", c.name, c.summary);
  std::fputs("\nRun `deltaserve <command> --help` for the flags of a command.\n", f);
}

const Command* FindCommand(const char* name) {
  for (const Command& c : std::span(kCommands)) {
    if (std::strcmp(name, c.name) == 0) return &c;
  }
  return nullptr;
}

int UnknownCommand(const char* name) {
  std::fprintf(stderr, "deltaserve: unknown command \"%s\"\n\n", name);
  PrintUsage(stderr);
  return 2;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  const char* name = argv[1];
  if (std::strcmp(name, "--help") == 0 || std::strcmp(name, "-h") == 0 ||
      (std::strcmp(name, "help") == 0 && argc == 2)) {
    PrintUsage(stdout);
    return 0;
  }
  if (std::strcmp(name, "help") == 0) {  // `deltaserve help <command>`: `<command> --help`
    const Command* c = FindCommand(argv[2]);
    if (c == nullptr) return UnknownCommand(argv[2]);
    char help_flag[] = "--help";
    char* help_argv[] = {argv[2], help_flag, nullptr};
    return c->run(2, help_argv);
  }
  const Command* c = FindCommand(name);
  if (c == nullptr) return UnknownCommand(name);
  return c->run(argc - 1, argv + 1);
}

}  // namespace
}  // namespace deltaserve

int main(int argc, char** argv) { return deltaserve::Main(argc, argv); }
