// Cross-entropy: loss against a naive log-softmax, stability at large logits, log(vocab) for
// uniform logits, and the logits gradient by finite differences.
#include "kernels/cross_entropy.h"

#include <cmath>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

TEST(CrossEntropy, MatchesNaiveLogSoftmax) {
  const int64_t n = 5, vocab = 11;
  const auto logits = random_vector(size_t(n * vocab), 1, 3.0);
  const auto targets = testing::random_ids(size_t(n), int32_t(vocab), 2);
  std::vector<double> lse(static_cast<size_t>(n));
  const double loss = cross_entropy_forward(logits.data(), targets.data(), lse.data(), n, vocab);
  double expected = 0;
  for (int64_t r = 0; r < n; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(logits[size_t(r * vocab + j)]);
    EXPECT_NEAR(lse[size_t(r)], std::log(sum), 1e-13);
    expected += -std::log(std::exp(logits[size_t(r * vocab + targets[size_t(r)])]) / sum);
  }
  EXPECT_NEAR(loss, expected / double(n), 1e-13);  // double round-off of a few terms
}

TEST(CrossEntropy, UniformLogitsGiveLogVocabAndLargeLogitsStayFinite) {
  const int64_t n = 3, vocab = 1000;
  std::vector<float> logits(size_t(n * vocab), 7.5f), lse(static_cast<size_t>(n));
  const std::vector<int32_t> targets = {0, 999, 500};
  EXPECT_NEAR(cross_entropy_forward(logits.data(), targets.data(), lse.data(), n, vocab),
              std::log(1000.0), 1e-6);  // float lse of 7.5 + 6.9: ~1 ulp
  // exp(200) overflows float: only the max-subtracted form gets this right.
  std::vector<float> big = {200.0f, 0.0f, 0.0f}, dbig(3), lse_big(1);
  const std::vector<int32_t> first = {0};
  const double loss = cross_entropy_forward(big.data(), first.data(), lse_big.data(), 1, 3);
  EXPECT_NEAR(loss, 2 * std::exp(-200.0), 1e-12);
  cross_entropy_backward(big.data(), first.data(), lse_big.data(), 1.0f, dbig.data(), 1, 3);
  for (float g : dbig) EXPECT_TRUE(std::isfinite(g));
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  const int64_t n = 4, vocab = 9;
  auto logits = random_vector(size_t(n * vocab), 3, 2.0);
  const auto targets = testing::random_ids(size_t(n), int32_t(vocab), 4);
  std::vector<double> lse(static_cast<size_t>(n));
  // The loss is already a scalar (the mean): its gradient is backward with scale = 1/n.
  auto loss = [&] {
    return cross_entropy_forward(logits.data(), targets.data(), lse.data(), n, vocab);
  };
  loss();
  std::vector<double> dlogits(logits.size(), 4.0);
  cross_entropy_backward(logits.data(), targets.data(), lse.data(), 1.0 / double(n),
                         dlogits.data(), n, vocab);
  testing::expect_gradient_matches("dlogits", logits, dlogits, loss);
}

}  // namespace
}  // namespace baleine::kernels
