#pragma once
// Shared test helpers: deterministic random inputs and the central finite-difference check that
// every hand-written backward in baleine is held to.
//
// Method: the op runs in double precision. A scalar loss L = Σ out ⊙ R, with R a fixed random
// tensor, turns any op into a scalar function; its backward is fed dout = R. Each input element
// x_i is perturbed by ±h and (L(x+h) − L(x−h)) / 2h is compared with the analytic gradient.
// With h = 1e-6 in double the truncation error is O(h²)·|f'''| ~ 1e-12 and the rounding error
// ~ 1e-16·|L|/h ~ 1e-10·|L|, so a relative tolerance of 1e-6 is loose enough for round-off and
// tight enough that any wrong term (typically O(1) relative) fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace baleine::testing {

inline std::vector<double> random_vector(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

inline std::vector<int32_t> random_ids(size_t n, int32_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, bound - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares analytic[i] with the central difference of loss() w.r.t. x[i], for every i (or for
// `max_checks` evenly spread indices when x is large). x is restored afterwards.
inline void expect_gradient_matches(const std::string& name, std::vector<double>& x,
                                    const std::vector<double>& analytic,
                                    const std::function<double()>& loss, double h = 1e-6,
                                    double rel_tol = 1e-6, size_t max_checks = 400) {
  ASSERT_EQ(x.size(), analytic.size()) << name;
  const size_t stride = std::max<size_t>(1, x.size() / max_checks);
  double worst = 0;
  size_t worst_index = 0;
  for (size_t i = 0; i < x.size(); i += stride) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2 * h);
    const double err = std::abs(numeric - analytic[i]) /
                       std::max(1.0, std::abs(numeric) + std::abs(analytic[i]));
    if (err > worst) { worst = err; worst_index = i; }
    EXPECT_LE(err, rel_tol) << name << "[" << i << "]: numeric " << numeric << " analytic "
                            << analytic[i];
    if (err > rel_tol) return;  // one report per tensor is enough
  }
  (void)worst_index;
}

// The same values in float (for float-vs-double agreement tests).
inline std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// Bit-for-bit equality (also tells +0 from −0), for determinism tests.
template <typename T>
void expect_bitwise_equal(const std::string& name, const std::vector<T>& a,
                          const std::vector<T>& b) {
  ASSERT_EQ(a.size(), b.size()) << name;
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(T))) << name;
}

}  // namespace baleine::testing
