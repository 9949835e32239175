#include "trainer/config/value_text.h"

#include <charconv>

namespace baleine::config {

std::string value_text(int64_t value) { return std::to_string(value); }

std::string value_text(uint64_t value) { return std::to_string(value); }

std::string value_text(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  // to_chars pads the exponent to two digits ("3e-04"); people write 3e-4.
  const size_t exponent = text.find('e');
  if (exponent != std::string::npos) {
    size_t digits = exponent + 1;
    if (text[digits] == '+' || text[digits] == '-') ++digits;
    while (digits + 1 < text.size() && text[digits] == '0') text.erase(digits, 1);
    if (text[exponent + 1] == '+') text.erase(exponent + 1, 1);
  }
  return text;
}

std::string value_text(bool value) { return value ? "true" : "false"; }

std::string value_text(const std::vector<int64_t>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + value_text(values[i]);
  return text + "]";
}

}  // namespace baleine::config
