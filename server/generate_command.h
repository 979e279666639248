// `deltaserve generate`: loads a model, generates one continuation of a prompt through the real
// Engine (the same path a server request takes) and streams the text to stdout.
//
// Exit codes: 0 done; 1 the model could not be loaded or the generation failed; 2 a usage
// error (bad flags, a prompt the model cannot take); 130 interrupted (Ctrl-C cancels the request,
// a second Ctrl-C kills the process).
#pragma once

#include <cstdio>

#include "server/generate_flags.h"

namespace deltaserve {

// argv[0] is the subcommand's name ("generate"); the flags follow.
int RunGenerateCommand(int argc, char** argv);

// Runs a parsed command: the continuation is streamed to `out` and ends with one newline (always
// added, so with print_ids the ids line that follows is unambiguous); errors and the one-line
// summary go to `err`. Returns the exit code.
int RunGenerate(const GenerateOptions& options, std::FILE* out, std::FILE* err);

}  // namespace deltaserve
