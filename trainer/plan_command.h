#pragma once
// `baleine plan` (see plan_command.cpp).
#include <string>
#include <vector>

namespace baleine::cli {

int run_plan(const std::vector<std::string>& args);
std::string plan_usage();

}  // namespace baleine::cli
