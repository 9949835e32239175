#pragma once
// Argument helpers shared by the subcommands (trainer/cli.cpp, trainer/schedule_command.cpp).
#include <string>
#include <vector>

#include "trainer/errors.h"

namespace baleine::cli {

// A malformed command line (exit 2); `where` names the command ("baleine schedule").
UserError usage_error(const std::string& what, const std::string& hint,
                      const std::string& where = "baleine");

// True for "--name" and "--name=VALUE".
bool is_option(const std::string& arg, const std::string& name);

// The value of the option at args[i]: "--name=VALUE", or "--name VALUE" (then advances i).
std::string option_value(const std::vector<std::string>& args, size_t& i,
                         const std::string& name, const std::string& where = "baleine");

}  // namespace baleine::cli
