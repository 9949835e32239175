// AdamW: one and two steps against a hand-written reference (bias correction, decoupled
// decay, grad_scale); BF16 moments against the FP32 update and against exact moments;
// sum_of_squares against a naive sum and across thread counts.
#include "kernels/adamw.h"

#include <omp.h>

#include <cmath>
#include <cstring>

#include "kernels/fp8.h"
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

// Random gradients over six decades (1e-4 .. 1e2 in magnitude), so the moments span many BF16
// exponents; never zero.
std::vector<float> gradients_over_decades(size_t n, uint64_t seed) {
  const auto normal = random_vector(n, seed);
  const auto spread = random_vector(n, seed + 1000);
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i) {
    const double decade = std::fmod(std::fabs(spread[i]) * 3.0, 6.0) - 4.0;  // in [-4, 2)
    g[i] = float((normal[i] >= 0 ? 1.0 : -1.0) * (0.1 + std::fabs(normal[i])) *
                 std::pow(10.0, decade));
  }
  return g;
}

std::vector<uint16_t> bf16_codes(const std::vector<float>& x) {
  std::vector<uint16_t> codes(x.size());
  for (size_t i = 0; i < x.size(); ++i) codes[i] = bf16_encode(x[i]);
  return codes;
}

std::vector<float> bf16_values(const std::vector<uint16_t>& codes) {
  std::vector<float> x(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) x[i] = bf16_decode(codes[i]);
  return x;
}

AdamWStep bf16_test_step() {
  AdamWStep step;
  step.lr = 1e-2f;
  step.beta1 = 0.9f;
  step.beta2 = 0.95f;
  step.eps = 1e-8f;
  step.weight_decay = 0.1f;
  step.grad_scale = 0.6f;
  return step;
}

TEST(AdamWBf16Moments, EqualTheFp32UpdateFollowedByRoundingTheMoments) {
  // > 2^16 elements: the kernel's OpenMP path, many 1024-element blocks and a ragged tail.
  const size_t n = 70001;
  const AdamWStep base = bf16_test_step();
  std::vector<float> param = testing::to_float(random_vector(n, 31));
  // Non-zero starting moments (a run in progress), already BF16 values.
  std::vector<uint16_t> m = bf16_codes(gradients_over_decades(n, 32));
  std::vector<float> v_start = gradients_over_decades(n, 33);
  for (float& x : v_start) x *= x;
  std::vector<uint16_t> v = bf16_codes(v_start);

  std::vector<float> ref_param = param;
  std::vector<uint16_t> ref_m = m, ref_v = v;
  const int saved_threads = omp_get_max_threads();
  for (int64_t t = 5; t <= 8; ++t) {
    AdamWStep step = base;
    step.step = t;
    const std::vector<float> grad = gradients_over_decades(n, 40 + uint64_t(t));
    // The reference: the FP32 kernel on the decoded moments, then rounding what is stored.
    std::vector<float> m32 = bf16_values(ref_m), v32 = bf16_values(ref_v);
    adamw_update(ref_param.data(), grad.data(), m32.data(), v32.data(), int64_t(n), step);
    ref_m = bf16_codes(m32);
    ref_v = bf16_codes(v32);
    // Alternate 1 and 2 threads: the kernel is elementwise, so the count must not matter.
    omp_set_num_threads(t % 2 ? 1 : 2);
    adamw_update_bf16_moments(param.data(), grad.data(), m.data(), v.data(), int64_t(n), step);
    SCOPED_TRACE("step " + std::to_string(t));
    testing::expect_bitwise_equal("param", param, ref_param);
    testing::expect_bitwise_equal("m", m, ref_m);
    testing::expect_bitwise_equal("v", v, ref_v);
  }
  omp_set_num_threads(saved_threads);
}

// An independent check of what is stored: after one step from zero moments, m = (1−β1)·g·s and
// v = (1−β2)·(g·s)², computed here in double. The stored BF16 value must be within half a BF16
// unit in the last place of it: BF16 keeps 8 significant bits, so that is <= 2^-8 of |x| (plus
// the FP32 rounding of the kernel's own arithmetic, a few 2^-24). And it must be rounded, not
// truncated: about half the values round away from zero.
TEST(AdamWBf16Moments, StoreTheNearestBf16OfTheMoments) {
  const size_t n = 20000;
  AdamWStep step = bf16_test_step();
  step.step = 1;
  std::vector<float> param = testing::to_float(random_vector(n, 51));
  const std::vector<float> grad = gradients_over_decades(n, 52);
  std::vector<uint16_t> m(n, 0), v(n, 0);  // BF16 code 0 is +0.0
  adamw_update_bf16_moments(param.data(), grad.data(), m.data(), v.data(), int64_t(n), step);

  size_t rounded_away = 0;
  for (size_t i = 0; i < n; ++i) {
    const double g = double(grad[i]) * double(step.grad_scale);
    const double exact_m = (1.0 - double(step.beta1)) * g;
    const double exact_v = (1.0 - double(step.beta2)) * g * g;
    const double bound = std::ldexp(1.0, -8) + 1e-6;
    ASSERT_LE(std::fabs(bf16_decode(m[i]) - exact_m), bound * std::fabs(exact_m)) << i;
    ASSERT_LE(std::fabs(bf16_decode(v[i]) - exact_v), bound * exact_v) << i;
    ASSERT_EQ(v[i] & 0x8000u, 0u) << "v must stay non-negative, element " << i;
    // Truncation would keep the top 16 bits of the FP32 value.
    const float m32 = float(exact_m);
    uint32_t bits;
    std::memcpy(&bits, &m32, sizeof bits);
    rounded_away += std::fabs(bf16_decode(m[i])) > std::fabs(bf16_decode(uint16_t(bits >> 16)));
  }
  // Round-to-nearest rounds up the half of values whose dropped 16 bits exceed half; for these
  // smooth random inputs that share is 0.5 ± 0.01 (binomial sd 0.0035 at n = 20000).
  const double share = double(rounded_away) / double(n);
  EXPECT_GT(share, 0.45);
  EXPECT_LT(share, 0.55);
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
