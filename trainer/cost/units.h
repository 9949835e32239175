#pragma once
// How cost figures are written, in one place, so that the plan, the progress line and the
// reports print the same figure the same way, and the way DeepSeek-V3's report prints them
// (Table 1: "2664K" GPU-hours, "$5.576M"). Four significant digits, trailing zeros dropped.
#include <string>

namespace baleine::cost {

// GPU-hours: "2664K" (thousands up to 10M, as V3's Table 1 writes 2664K rather than 2.664M),
// "30.84M" from 10M up (as Llama 3.1's model card writes its 30.84M), plain below 1000
// ("1.23", "0.0012").
std::string format_hours(double hours);

// US dollars: "$5.328M", "$61.68M", "$5.328K", "$12.34", "$0.0012".
std::string format_usd(double usd);

// Counts (parameters, tokens): "37.75B", "14.8T", "926.7M", "257".
std::string format_count(double count);

// A quantity with an SI prefix and a unit, e.g. format_si(2.372e11, "FLOP") = "237.2 GFLOP",
// format_si(8.6e10, "B") = "86 GB" (decimal prefixes: 1 GB = 1e9 bytes).
std::string format_si(double value, const std::string& unit);

// `value` rounded to `digits` significant digits, in fixed notation, trailing zeros dropped:
// significant(2664000.4, 4) = "2664000", significant(0.0012345, 4) = "0.001235".
std::string significant(double value, int digits);

}  // namespace baleine::cost
