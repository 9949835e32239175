#pragma once
// `baleine schedule CONFIG`: the pipeline schedule the config asks for, as data. Prints every
// rank's op list, simulates it with the given costs (bubble and live activations per rank
// beside the published formula) and draws the timeline (terminal and SVG). Runs no model.
#include <string>
#include <vector>

namespace baleine::cli {

int run_schedule(const std::vector<std::string>& args);
std::string schedule_usage();

}  // namespace baleine::cli
