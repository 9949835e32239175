#pragma once
// `baleine report` (see report_command.cpp).
#include <string>
#include <vector>

namespace baleine::cli {

int run_report(const std::vector<std::string>& args);
std::string report_usage();

}  // namespace baleine::cli
