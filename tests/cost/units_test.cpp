// The cost figures' formats (trainer/cost/units.h): DeepSeek-V3's Table 1 and Llama 3.1's model
// card written as they write them, and random values read back within four significant digits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "trainer/cost/units.h"

namespace baleine::cost {
namespace {

TEST(Units, HoursAsDeepSeekV3AndLlamaWriteThem) {
  EXPECT_EQ(format_hours(2664e3), "2664K");
  EXPECT_EQ(format_hours(119e3), "119K");
  EXPECT_EQ(format_hours(5e3), "5K");
  EXPECT_EQ(format_hours(2788e3), "2788K");
  EXPECT_EQ(format_hours(30.84e6), "30.84M");
  EXPECT_EQ(format_hours(180e3), "180K");
  // What a plan computes: 14.8T tokens at 180K hours per trillion, in floating point.
  EXPECT_EQ(format_hours(14.8e12 / 1e12 * 180000.0), "2664K");
  EXPECT_EQ(format_hours(1.23), "1.23");
  EXPECT_EQ(format_hours(0.0012), "0.0012");
  EXPECT_EQ(format_hours(0), "0");
  // Four significant digits, and rounding that reaches the next unit moves to it.
  EXPECT_EQ(format_hours(2664400), "2664K");
  EXPECT_EQ(format_hours(9994000), "9994K");
  EXPECT_EQ(format_hours(9999600), "10M");
  EXPECT_EQ(format_hours(999.96), "1K");
  EXPECT_EQ(format_hours(12345678), "12.35M");
}

TEST(Units, DollarsAsDeepSeekV3WritesThem) {
  EXPECT_EQ(format_usd(5.328e6), "$5.328M");
  EXPECT_EQ(format_usd(5.576e6), "$5.576M");
  EXPECT_EQ(format_usd(2.0 * 2664e3), "$5.328M");
  EXPECT_EQ(format_usd(61.68e6), "$61.68M");
  EXPECT_EQ(format_usd(5328), "$5.328K");
  EXPECT_EQ(format_usd(12.34), "$12.34");
  EXPECT_EQ(format_usd(2), "$2");
  EXPECT_EQ(format_usd(0.0012), "$0.0012");
  EXPECT_EQ(format_usd(1.5e9), "$1.5B");
  EXPECT_EQ(format_usd(-12.34), "-$12.34");
}

TEST(Units, CountsAndSiQuantities) {
  EXPECT_EQ(format_count(37.75e9), "37.75B");
  EXPECT_EQ(format_count(14.8e12), "14.8T");
  EXPECT_EQ(format_count(926679040), "926.7M");
  EXPECT_EQ(format_count(257), "257");
  EXPECT_EQ(format_si(2.372e11, "FLOP"), "237.2 GFLOP");
  EXPECT_EQ(format_si(8.6e10, "B"), "86 GB");
  EXPECT_EQ(format_si(12, "B"), "12 B");
  EXPECT_EQ(significant(2664000.4, 4), "2664000");
  EXPECT_EQ(significant(0.0012345, 4), "0.001235");
  EXPECT_EQ(significant(989.5, 6), "989.5");
}

// Strips the "$" and the unit suffix and multiplies back.
double read_back(std::string text) {
  double sign = 1;
  if (text.rfind("-", 0) == 0) {
    sign = -1;
    text = text.substr(1);
  }
  if (text.rfind("$", 0) == 0) text = text.substr(1);
  double scale = 1;
  switch (text.back()) {
    case 'K': scale = 1e3; break;
    case 'M': scale = 1e6; break;
    case 'B': scale = 1e9; break;
    case 'T': scale = 1e12; break;
    default: break;
  }
  if (scale != 1) text.pop_back();
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  EXPECT_EQ(*end, '\0') << text;
  return sign * v * scale;
}

// Random magnitudes over 16 decades: every format must read back within half a unit in the
// fourth significant digit, i.e. a relative error of at most 5e-4 (at 1000.5 -> "1001").
TEST(Units, RandomValuesReadBackWithinFourSignificantDigits) {
  std::mt19937_64 rng(20241227);
  std::uniform_real_distribution<double> exponent(-4.0, 12.0);
  for (int i = 0; i < 5000; ++i) {
    const double x = std::pow(10.0, exponent(rng));
    for (const std::string& text : {format_hours(x), format_usd(x), format_count(x)}) {
      const double back = read_back(text);
      EXPECT_LE(std::fabs(back - x) / x, 5e-4 + 1e-12) << x << " -> " << text;
    }
    EXPECT_NEAR(read_back(format_usd(-x)), -x, 5e-4 * x);
  }
}

}  // namespace
}  // namespace baleine::cost
