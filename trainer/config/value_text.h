#pragma once
// How a config value is written in the table, in config_to_yaml and in error messages.
#include <cstdint>
#include <string>
#include <vector>

namespace baleine::config {

std::string value_text(int64_t value);
std::string value_text(uint64_t value);
// The shortest text that reads back as the same double (std::to_chars), so that
// config_to_yaml round-trips exactly: 0.1 stays "0.1", not "0.10000000000000001"; 3e-4 is
// written "3e-4".
std::string value_text(double value);
std::string value_text(bool value);
inline std::string value_text(const std::string& value) { return value; }
// YAML flow style, "[2, 1, 1]", and "[]" when empty: the table shows what the file would say.
std::string value_text(const std::vector<int64_t>& values);

}  // namespace baleine::config
