// vector_exp(float) against double-precision exp: relative error within 2 ulp over the whole
// finite range that does not overflow or flush, and the edges (overflow to +inf, flush to 0,
// NaN, ±inf inputs) behave as the header says.
#include "kernels/cpu/vector_exp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace baleine::kernels {
namespace {

// |got - exact| in units of the float spacing at exact.
double ulp_error(float got, double exact) {
  const float rounded = static_cast<float>(exact);
  const double ulp = std::nextafter(rounded, std::numeric_limits<float>::infinity()) - rounded;
  return std::fabs(double(got) - exact) / ulp;
}

TEST(VectorExp, WithinTwoUlpOfDoubleExpAcrossTheRange) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> wide(-87.0f, 88.7f), narrow(-1.0f, 1.0f);
  double worst = 0;
  float worst_x = 0;
  std::vector<float> xs;
  for (int i = 0; i < 1000000; ++i) xs.push_back(i % 2 ? wide(rng) : narrow(rng));
  // Values where the reduction switches n, and exact integers.
  for (int n = -125; n <= 127; ++n) {
    const float x = float(n) * 0.69314718f;
    xs.insert(xs.end(), {x, std::nextafter(x, 0.0f), std::nextafter(x, 100.0f), float(n) / 2});
  }
  std::vector<float> got(xs.size());
#pragma omp simd
  for (size_t i = 0; i < xs.size(); ++i) got[i] = vector_exp(xs[i]);
  for (size_t i = 0; i < xs.size(); ++i) {
    const double exact = std::exp(double(xs[i]));
    if (exact < double(std::numeric_limits<float>::min())) continue;  // flushed, tested below
    const double err = ulp_error(got[i], exact);
    if (err > worst) {
      worst = err;
      worst_x = xs[i];
    }
  }
  EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
  std::printf("vector_exp: worst error %.3f ulp at x = %.9g over %zu inputs\n", worst, worst_x,
              xs.size());
}

TEST(VectorExp, EdgesOverflowFlushAndNaN) {
  EXPECT_EQ(vector_exp(0.0f), 1.0f);
  EXPECT_EQ(vector_exp(89.0f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(vector_exp(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(vector_exp(-88.0f), 0.0f);
  EXPECT_EQ(vector_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(vector_exp(std::numeric_limits<float>::quiet_NaN())));
  // The largest input that does not overflow gives a finite value near FLT_MAX.
  const float top = vector_exp(88.72f);
  EXPECT_TRUE(std::isfinite(top));
  EXPECT_NEAR(double(top) / std::exp(double(88.72f)), 1.0, 2.5e-7);
  // The smallest input that is not flushed gives a normal number.
  EXPECT_GE(vector_exp(-87.3f), std::numeric_limits<float>::min());
}

TEST(VectorExp, DoubleIsStdExp) {
  for (double x : {-700.0, -1.5, 0.0, 0.25, 3.0, 700.0}) EXPECT_EQ(vector_exp(x), std::exp(x));
}

}  // namespace
}  // namespace baleine::kernels
