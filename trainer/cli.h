#pragma once
// The command line: `baleine <command> [args]`. Parsing is separate from running so that every
// malformed invocation is a UserError (exit 2) before anything starts.
#include <string>
#include <vector>

namespace baleine::cli {

// Runs the program; returns the process exit status (0 ok, 2 invalid input, 1 internal error).
int run(int argc, char** argv);

std::string usage();

}  // namespace baleine::cli
