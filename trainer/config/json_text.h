#pragma once
// JSON text written by hand (baleine has no JSON library; reading goes through yaml-cpp, JSON
// being YAML 1.2 flow syntax): the ledger, the cost report and checkpoint manifests share these.
#include <cstdint>
#include <string>

namespace baleine::config {

// RFC 8259 §7: quote, backslash and the control characters U+0000..U+001F are escaped; other
// bytes (UTF-8) pass through. Returns the quoted string.
std::string json_string(const std::string& text);

// The shortest text that reads back to the same double (std::to_chars without a precision,
// C++17 [charconv.to.chars]), locale-free unlike printf's %g. JSON has no NaN or infinity:
// they are written as null.
std::string json_number(double value);
std::string json_number(int64_t value);

}  // namespace baleine::config
