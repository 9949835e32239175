// AdamW: one and two steps against a hand-written reference (bias correction, decoupled
// decay, grad_scale); sum_of_squares against a naive sum and across thread counts.
#include "kernels/adamw.h"

#include <omp.h>

#include <cmath>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

TEST(AdamW, FirstStepMatchesHandComputedValues) {
  // With m = v = 0 the first step is: m = (1−β1)g, v = (1−β2)g², m̂ = g, v̂ = g², so
  // param ← param·(1 − lr·wd) − lr · g / (|g| + eps).
  AdamWStep step;
  step.lr = 0.1f;
  step.weight_decay = 0.5f;
  step.grad_scale = 0.5f;
  std::vector<float> param = {1.0f, -2.0f, 0.5f}, grad = {4.0f, -1.0f, 0.0f};
  std::vector<float> m(3, 0.0f), v(3, 0.0f);
  adamw_update(param.data(), grad.data(), m.data(), v.data(), 3, step);
  // Scaled gradients 2, −0.5, 0; decay factor 1 − 0.05 = 0.95.
  EXPECT_NEAR(param[0], 0.95 - 0.1 * 2 / (2 + 1e-8), 1e-6);
  EXPECT_NEAR(param[1], -1.9 + 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);
  EXPECT_NEAR(param[2], 0.475, 1e-7);
  EXPECT_NEAR(m[0], 0.1 * 2, 1e-7);
  EXPECT_NEAR(v[1], 0.05 * 0.25, 1e-8);
}

TEST(AdamW, SeveralStepsMatchDoubleReference) {
  const int64_t n = 257;
  AdamWStep step;
  step.lr = 3e-3f;
  step.beta1 = 0.8f;
  step.beta2 = 0.9f;
  step.eps = 1e-6f;
  step.weight_decay = 0.1f;
  step.grad_scale = 0.7f;
  auto p = random_vector(size_t(n), 1);
  std::vector<double> m(size_t(n), 0.0), v(size_t(n), 0.0);
  auto pf = testing::to_float(p);
  std::vector<float> mf(size_t(n), 0.0f), vf(size_t(n), 0.0f);
  for (int64_t t = 1; t <= 3; ++t) {
    const auto g = random_vector(size_t(n), 10 + uint64_t(t));
    const auto gf = testing::to_float(g);
    step.step = t;
    adamw_update(pf.data(), gf.data(), mf.data(), vf.data(), n, step);
    const double b1 = step.beta1, b2 = step.beta2;
    for (size_t i = 0; i < size_t(n); ++i) {
      const double gs = double(gf[i]) * double(step.grad_scale);
      m[i] = b1 * m[i] + (1 - b1) * gs;
      v[i] = b2 * v[i] + (1 - b2) * gs * gs;
      const double m_hat = m[i] / (1 - std::pow(b1, double(t)));
      const double v_hat = v[i] / (1 - std::pow(b2, double(t)));
      p[i] = p[i] * (1 - double(step.lr) * double(step.weight_decay)) -
             double(step.lr) * m_hat / (std::sqrt(v_hat) + double(step.eps));
    }
  }
  // Each step moves a parameter by <= lr = 3e-3; float round-off of p (|p| ~ 1) is ~1e-7 per
  // step, and the float update itself is accurate to ~1e-6 relative of lr.
  for (size_t i = 0; i < size_t(n); ++i) ASSERT_NEAR(pf[i], p[i], 1e-6) << i;
}

TEST(SumOfSquares, MatchesNaiveAndIsThreadCountIndependent) {
  const size_t n = 100003;  // several chunks and a ragged tail
  const auto x = random_vector(n, 20);
  const auto xf = testing::to_float(x);
  long double naive = 0, naive_f = 0;
  for (size_t i = 0; i < n; ++i) {
    naive += (long double)x[i] * x[i];
    naive_f += (long double)xf[i] * xf[i];
  }
  // Summed in double: relative round-off ~ log2(n)·1e-16.
  EXPECT_NEAR(sum_of_squares(x.data(), int64_t(n)), double(naive), 1e-11 * double(naive));
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<double> one = {sum_of_squares(xf.data(), int64_t(n))};
  omp_set_num_threads(2);
  const std::vector<double> two = {sum_of_squares(xf.data(), int64_t(n))};
  omp_set_num_threads(saved);
  EXPECT_NEAR(one[0], double(naive_f), 1e-11 * double(naive_f));
  testing::expect_bitwise_equal("sum_of_squares", one, two);
  EXPECT_EQ(sum_of_squares(x.data(), 0), 0.0);
}

}  // namespace
}  // namespace baleine::kernels
