#include "trainer/cost/units.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace baleine::cost {

namespace {

constexpr int kDigits = 4;

double round_significant(double x, int digits) {
  if (x == 0 || !std::isfinite(x)) return x;
  const int exponent = static_cast<int>(std::floor(std::log10(std::fabs(x))));
  const int shift = digits - 1 - exponent;
  // Divide by a power of ten rather than multiply by its (inexact) reciprocal, so that
  // 2664000 stays 2664000 and does not become 2664000.0000000005.
  if (shift >= 0) {
    const double p = std::pow(10.0, shift);
    return std::round(x * p) / p;
  }
  const double q = std::pow(10.0, -shift);
  return std::round(x / q) * q;
}

std::string strip_trailing_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

struct Unit {
  double from;      // the smallest (rounded) magnitude written in this unit
  double factor;    // what the value is divided by
  const char* suffix;
};

// `value` in the largest unit (listed largest first) whose `from` it reaches after rounding
// to four significant digits, so 999.96K is written "1M", never "1000K".
std::string in_units(double value, const std::vector<Unit>& units) {
  const double rounded = round_significant(value, kDigits);
  for (const Unit& unit : units) {
    if (std::fabs(rounded) >= unit.from) {
      return significant(rounded / unit.factor, kDigits) + unit.suffix;
    }
  }
  return significant(rounded, kDigits);
}

}  // namespace

std::string significant(double value, int digits) {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  const double rounded = round_significant(value, digits);
  if (rounded == 0) return "0";
  const int exponent = static_cast<int>(std::floor(std::log10(std::fabs(rounded))));
  const int decimals = std::max(0, digits - 1 - exponent);
  char buffer[400];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, rounded);
  return strip_trailing_zeros(buffer);
}

std::string format_hours(double hours) {
  return in_units(hours, {{1e7, 1e6, "M"}, {1e3, 1e3, "K"}});
}

std::string format_usd(double usd) {
  const std::string digits =
      in_units(std::fabs(usd), {{1e9, 1e9, "B"}, {1e6, 1e6, "M"}, {1e3, 1e3, "K"}});
  return (usd < 0 ? "-$" : "$") + digits;
}

std::string format_count(double count) {
  return in_units(count, {{1e12, 1e12, "T"}, {1e9, 1e9, "B"}, {1e6, 1e6, "M"}, {1e3, 1e3, "K"}});
}

std::string format_si(double value, const std::string& unit) {
  const std::string digits = in_units(value, {{1e18, 1e18, " E"},
                                              {1e15, 1e15, " P"},
                                              {1e12, 1e12, " T"},
                                              {1e9, 1e9, " G"},
                                              {1e6, 1e6, " M"},
                                              {1e3, 1e3, " k"}});
  // The prefix already brought its space ("237.2 G" + "FLOP"); a bare number needs one.
  return digits.back() >= '0' && digits.back() <= '9' ? digits + " " + unit : digits + unit;
}

}  // namespace baleine::cost
