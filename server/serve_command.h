// `deltaserve serve`: loads a model and serves it over gRPC with Prometheus metrics until SIGTERM
// or SIGINT, then drains (stops admitting, lets in-flight requests finish within --drain-grace)
// and returns 0.
#pragma once

#include <string>
#include <vector>

namespace deltaserve {

// `args` are the arguments after "serve". Returns the process exit code: 0 after a clean drain
// (or --help), 2 for bad flags, 1 when start-up fails (model, ports, files).
int RunServeCommand(const std::vector<std::string>& args);

// The `deltaserve` program's entry: argv[0] is the subcommand's name ("serve"); flags follow.
int RunServeCommand(int argc, char** argv);

}  // namespace deltaserve
