// MoE routing and the sequence-wise balance loss (kernels/routing.h) against brute-force
// references and central finite differences (tests/gradcheck.h).
#include "kernels/routing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tests/gradcheck.h"
#include "tests/kernels/routing_test_support.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;
using namespace routing_testing;


// Smallest gap, over tokens, between the last chosen key and the best unchosen key. A finite
// difference step h moves any score by at most h (softmax: Σ|ds| <= 2h per logit), so a margin
// far above h means the perturbed forward chooses the same experts.
double selection_margin(const Routed& r, const std::vector<double>& bias, RoutingShape shape) {
  double margin = INFINITY;
  for (int64_t t = 0; t < shape.tokens; ++t) {
    const double* s = &r.scores[t * shape.experts];
    const int32_t* c = &r.chosen[t * shape.top_k];
    const double last = s[c[shape.top_k - 1]] + bias[c[shape.top_k - 1]];
    for (int64_t e = 0; e < shape.experts; ++e) {
      if (std::find(c, c + shape.top_k, e) != c + shape.top_k) continue;
      margin = std::min(margin, last - (s[e] + bias[e]));
    }
  }
  return margin;
}

// Random logits whose selection is at least 1e-4 away from a boundary (1e-4 >> h = 1e-6).
std::vector<double> well_separated_logits(const std::vector<double>& bias, RoutingShape shape,
                                          RoutingOptions options, uint64_t seed) {
  for (uint64_t attempt = 0; attempt < 100; ++attempt) {
    auto logits = random_vector(shape.tokens * shape.experts, seed + 1000 * attempt, 1.5);
    auto r = route(logits, &bias, shape, options);
    if (selection_margin(r, bias, shape) > 1e-4) return logits;
  }
  ADD_FAILURE() << "no well-separated draw found";
  return {};
}

template <typename T>
void check_against_brute_force(ScoreFunction score, uint64_t seed) {
  const RoutingShape shape{33, 16, 4};
  const RoutingOptions options{score, true, 2.5};
  std::vector<T> logits, bias;
  for (double v : random_vector(shape.tokens * shape.experts, seed, 2.0)) logits.push_back(T(v));
  for (double v : random_vector(shape.experts, seed + 1, 0.3)) bias.push_back(T(v));
  auto r = route(logits, &bias, shape, options);
  // Tolerances: float scores/weights carry a few ulp (~1e-7) of exp/division rounding; double
  // ones ~1e-15. 1e-5 and 1e-12 leave room for that and catch any wrong formula.
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  for (int64_t t = 0; t < shape.tokens; ++t) {
    const T* row = &r.scores[t * shape.experts];
    double max_logit = -INFINITY, softmax_sum = 0;
    for (int64_t e = 0; e < shape.experts; ++e) {
      max_logit = std::max(max_logit, double(logits[t * shape.experts + e]));
    }
    for (int64_t e = 0; e < shape.experts; ++e) {
      softmax_sum += std::exp(double(logits[t * shape.experts + e]) - max_logit);
    }
    for (int64_t e = 0; e < shape.experts; ++e) {
      const double x = logits[t * shape.experts + e];
      const double expected = score == ScoreFunction::kSigmoid
                                  ? 1 / (1 + std::exp(-x))
                                  : std::exp(x - max_logit) / softmax_sum;
      EXPECT_NEAR(row[e], expected, tol) << "t=" << t << " e=" << e;
    }
    const auto expected = brute_force_top_k(row, bias.data(), shape.experts, shape.top_k);
    const std::vector<int32_t> got(&r.chosen[t * shape.top_k], &r.chosen[(t + 1) * shape.top_k]);
    EXPECT_EQ(got, expected) << "token " << t;
    double chosen_sum = 0, weight_sum = 0;
    for (int32_t e : got) chosen_sum += row[e];
    for (int64_t j = 0; j < shape.top_k; ++j) {
      weight_sum += r.weights[t * shape.top_k + j];
      EXPECT_NEAR(r.weights[t * shape.top_k + j], 2.5 * row[got[j]] / chosen_sum, tol);
    }
    EXPECT_NEAR(weight_sum, 2.5, tol) << "normalised weights sum to route_scale";
  }
}

TEST(Routing, TopKMatchesBruteForce) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    check_against_brute_force<float>(ScoreFunction::kSigmoid, seed);
    check_against_brute_force<double>(ScoreFunction::kSigmoid, seed);
    check_against_brute_force<float>(ScoreFunction::kSoftmax, seed);
    check_against_brute_force<double>(ScoreFunction::kSoftmax, seed);
  }
}

TEST(Routing, TiesGoToLowerIndexAndChosenAreDistinct) {
  const RoutingShape shape{2, 8, 4};
  // Token 0: all logits equal -> experts 0..3. Token 1: equal logits, and a bias that lifts
  // experts 5 and 2 by exactly the same amount -> 2 before 5, then the lowest of the rest.
  std::vector<double> logits(16, 0.0), bias(8, 0.0);
  bias[5] = bias[2] = 0.25;
  auto r = route(logits, nullptr, shape, {});
  EXPECT_EQ(std::vector<int32_t>(r.chosen.begin(), r.chosen.begin() + 4),
            (std::vector<int32_t>{0, 1, 2, 3}));
  r = route(logits, &bias, shape, {});
  EXPECT_EQ(std::vector<int32_t>(r.chosen.begin() + 4, r.chosen.end()),
            (std::vector<int32_t>{2, 5, 0, 1}));
  // Random draws: every token's chosen experts are distinct and in range.
  const RoutingShape big{50, 12, 6};
  auto random_route = route(random_vector(50 * 12, 9), nullptr, big, {});
  for (int64_t t = 0; t < big.tokens; ++t) {
    std::set<int32_t> unique(&random_route.chosen[t * 6], &random_route.chosen[t * 6 + 6]);
    EXPECT_EQ(unique.size(), 6u);
    EXPECT_GE(*unique.begin(), 0);
    EXPECT_LT(*unique.rbegin(), 12);
  }
}

TEST(Routing, BiasChoosesButDoesNotWeigh) {
  const RoutingShape shape{1, 6, 2};
  const std::vector<double> logits{3.0, 2.0, 1.0, 0.0, -1.0, -2.0};
  std::vector<double> bias{-10.0, 0.0, 0.0, 0.0, 0.0, 10.0};
  for (bool normalize : {true, false}) {
    const RoutingOptions options{ScoreFunction::kSigmoid, normalize, 1.5};
    auto r = route(logits, &bias, shape, options);
    // Without the bias experts 0 and 1 win; the bias swaps expert 0 out for expert 5.
    EXPECT_EQ(r.chosen, (std::vector<int32_t>{5, 1}));
    const double s5 = r.scores[5], s1 = r.scores[1];
    EXPECT_DOUBLE_EQ(s5, 1 / (1 + std::exp(2.0))) << "scores never see the bias";
    const double denominator = normalize ? s5 + s1 : 1.0;
    EXPECT_NEAR(r.weights[0], 1.5 * s5 / denominator, 1e-15);
    EXPECT_NEAR(r.weights[1], 1.5 * s1 / denominator, 1e-15);
  }
}

// Loss = Σ weights ⊙ R + Σ scores ⊙ R2 (the second term only when `with_extra`), in double.
void gradcheck_routing(RoutingOptions options, bool with_extra, uint64_t seed) {
  const RoutingShape shape{6, 8, 3};
  const auto bias = random_vector(shape.experts, seed + 7, 0.2);
  auto logits = well_separated_logits(bias, shape, options, seed);
  ASSERT_FALSE(logits.empty());
  const auto dweights = random_vector(shape.tokens * shape.top_k, seed + 11);
  const auto dscores = random_vector(shape.tokens * shape.experts, seed + 13);
  auto loss = [&] {
    auto r = route(logits, &bias, shape, options);
    return testing::dot(r.weights, dweights) + (with_extra ? testing::dot(r.scores, dscores) : 0);
  };
  auto r = route(logits, &bias, shape, options);
  std::vector<double> dlogits(logits.size(), 12345.0);  // must be overwritten
  routing_backward(dweights.data(), with_extra ? dscores.data() : nullptr, r.scores.data(),
                   r.chosen.data(), dlogits.data(), shape, options);
  // Default gradcheck tolerance (1e-6 relative, h = 1e-6): see tests/gradcheck.h.
  testing::expect_gradient_matches("dlogits", logits, dlogits, loss);
}

TEST(Routing, GradcheckSigmoidNormalized) {
  gradcheck_routing({ScoreFunction::kSigmoid, true, 2.5}, false, 21);
}
TEST(Routing, GradcheckSigmoidUnnormalized) {
  gradcheck_routing({ScoreFunction::kSigmoid, false, 2.5}, false, 22);
}
TEST(Routing, GradcheckSoftmaxNormalized) {
  gradcheck_routing({ScoreFunction::kSoftmax, true, 1.0}, false, 23);
}
TEST(Routing, GradcheckSoftmaxUnnormalized) {
  gradcheck_routing({ScoreFunction::kSoftmax, false, 16.0}, false, 24);
}
TEST(Routing, GradcheckWithExtraScoreGradient) {
  gradcheck_routing({ScoreFunction::kSigmoid, true, 2.5}, true, 25);
  gradcheck_routing({ScoreFunction::kSoftmax, false, 1.0}, true, 26);
}

// --- sequence-wise balance loss -----------------------------------------------------------------

// Eqs. 17-20 of the DeepSeek-V3 report, one sum at a time.
double direct_balance_loss(const std::vector<double>& s, const std::vector<int32_t>& chosen,
                           RoutingShape shape, int64_t seq_len, double alpha) {
  const int64_t E = shape.experts, K = shape.top_k, sequences = shape.tokens / seq_len;
  double total = 0;
  for (int64_t b = 0; b < sequences; ++b) {
    for (int64_t i = 0; i < E; ++i) {
      double count = 0, P = 0;
      for (int64_t t = b * seq_len; t < (b + 1) * seq_len; ++t) {
        for (int64_t j = 0; j < K; ++j) count += chosen[t * K + j] == i ? 1 : 0;
        double row_sum = 0;
        for (int64_t e = 0; e < E; ++e) row_sum += s[t * E + e];
        P += s[t * E + i] / row_sum / double(seq_len);
      }
      const double f = double(E) / double(K * seq_len) * count;
      total += f * P;
    }
  }
  return alpha * total / double(sequences);
}

// Each token picks top_k distinct experts at random.
std::vector<int32_t> random_distinct_choice(RoutingShape shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> chosen, experts(shape.experts);
  for (int64_t t = 0; t < shape.tokens; ++t) {
    std::iota(experts.begin(), experts.end(), 0);
    std::shuffle(experts.begin(), experts.end(), rng);
    chosen.insert(chosen.end(), experts.begin(), experts.begin() + shape.top_k);
  }
  return chosen;
}

std::vector<double> positive_scores(size_t n, uint64_t seed) {
  auto s = random_vector(n, seed);
  for (double& v : s) v = 1 / (1 + std::exp(-v));  // sigmoid outputs, as routing makes them
  return s;
}

TEST(SeqBalanceLoss, MatchesDirectLoop) {
  const RoutingShape shape{3 * 10, 8, 3};
  const auto scores = positive_scores(shape.tokens * shape.experts, 31);
  const auto chosen = random_distinct_choice(shape, 32);
  const double expected = direct_balance_loss(scores, chosen, shape, 10, 0.01);
  // Same sums regrouped: rounding only, ~1e-16 relative; 1e-12 catches any wrong factor.
  EXPECT_NEAR(seq_balance_loss_forward(scores.data(), chosen.data(), shape, 10, 0.01), expected,
              1e-12 * std::abs(expected));
  std::vector<float> scores_f(scores.begin(), scores.end());
  EXPECT_NEAR(seq_balance_loss_forward(scores_f.data(), chosen.data(), shape, 10, 0.01), expected,
              1e-6 * std::abs(expected)) << "float scores: only their input rounding (~6e-8)";
}

// Why alpha is the reference value. Σ_e f_e = E (the K·L choices spread over E experts, times
// E/(K·L)) and Σ_e P_e = 1. (a) Balanced routing (f_e = 1): loss = alpha·Σ P_e = alpha for ANY
// scores. (b) Uniform scores (P_e = 1/E): loss = alpha·Σ f_e / E = alpha for ANY routing.
// (c) When the router's probability mass agrees with its choices (P_e = f_e/E, e.g. score 1 on
// the chosen experts and 0 elsewhere): loss = alpha/E·Σ f_e² >= alpha/E²·(Σ f_e)² = alpha by
// Cauchy-Schwarz, with equality only for balanced routing; total collapse onto K experts gives
// f = E/K there and loss = alpha·E/K.
TEST(SeqBalanceLoss, BalancedRoutingGivesAlpha) {
  const RoutingShape shape{2 * 8, 8, 2};  // seq_len 8: 16 choices per sequence, 2 per expert
  const double alpha = 0.003, tol = 1e-15;  // exact sums of a few terms: rounding only
  std::vector<int32_t> balanced(shape.tokens * shape.top_k);
  for (size_t a = 0; a < balanced.size(); ++a) balanced[a] = int32_t(a % shape.experts);
  const auto scores = positive_scores(shape.tokens * shape.experts, 41);
  EXPECT_NEAR(seq_balance_loss_forward(scores.data(), balanced.data(), shape, 8, alpha), alpha,
              tol);
  const std::vector<double> uniform(scores.size(), 0.37);
  const auto random_choice = random_distinct_choice(shape, 42);
  EXPECT_NEAR(seq_balance_loss_forward(uniform.data(), random_choice.data(), shape, 8, alpha),
              alpha, tol);
  auto consistent_scores = [&](const std::vector<int32_t>& chosen) {
    std::vector<double> s(scores.size(), 0.0);
    for (size_t a = 0; a < chosen.size(); ++a) s[(a / shape.top_k) * shape.experts + chosen[a]] = 1;
    return s;
  };
  auto s = consistent_scores(balanced);
  EXPECT_NEAR(seq_balance_loss_forward(s.data(), balanced.data(), shape, 8, alpha), alpha, tol);
  s = consistent_scores(random_choice);
  EXPECT_GT(seq_balance_loss_forward(s.data(), random_choice.data(), shape, 8, alpha), alpha);
  std::vector<int32_t> collapsed(balanced.size());
  for (size_t a = 0; a < collapsed.size(); ++a) collapsed[a] = int32_t(a % shape.top_k);
  s = consistent_scores(collapsed);
  EXPECT_NEAR(seq_balance_loss_forward(s.data(), collapsed.data(), shape, 8, alpha),
              alpha * shape.experts / shape.top_k, tol);
}

TEST(SeqBalanceLoss, GradcheckScoresAndAccumulates) {
  const RoutingShape shape{3 * 5, 6, 2};
  auto scores = positive_scores(shape.tokens * shape.experts, 51);
  const auto chosen = random_distinct_choice(shape, 52);
  const double alpha = 0.7, dloss = 1.3;  // alpha, dloss O(1) so the gradient is not tiny
  auto loss = [&] {
    return dloss * seq_balance_loss_forward(scores.data(), chosen.data(), shape, 5, alpha);
  };
  const auto prefill = random_vector(scores.size(), 53);
  std::vector<double> dscores = prefill;
  seq_balance_loss_backward(scores.data(), chosen.data(), shape, 5, alpha, dloss, dscores.data());
  std::vector<double> added(scores.size());
  for (size_t i = 0; i < added.size(); ++i) added[i] = dscores[i] - prefill[i];
  testing::expect_gradient_matches("dscores", scores, added, loss);
}

// The way the trainer uses both: Σ weights ⊙ R + balance loss, all the way back to the logits.
TEST(SeqBalanceLoss, GradcheckThroughRouting) {
  const RoutingShape shape{2 * 4, 8, 2};
  const RoutingOptions options{ScoreFunction::kSigmoid, true, 2.5};
  const std::vector<double> bias(shape.experts, 0.0);
  auto logits = well_separated_logits(bias, shape, options, 61);
  ASSERT_FALSE(logits.empty());
  const auto dweights = random_vector(shape.tokens * shape.top_k, 62);
  const double alpha = 0.5;
  auto loss = [&] {
    auto r = route(logits, &bias, shape, options);
    return testing::dot(r.weights, dweights) +
           seq_balance_loss_forward(r.scores.data(), r.chosen.data(), shape, 4, alpha);
  };
  auto r = route(logits, &bias, shape, options);
  std::vector<double> dscores(logits.size(), 0.0), dlogits(logits.size());
  seq_balance_loss_backward(r.scores.data(), r.chosen.data(), shape, 4, alpha, 1.0,
                            dscores.data());
  routing_backward(dweights.data(), dscores.data(), r.scores.data(), r.chosen.data(),
                   dlogits.data(), shape, options);
  testing::expect_gradient_matches("dlogits", logits, dlogits, loss);
}

#ifdef _OPENMP
// Bit-identical results whatever the thread count (the trainer's resume guarantee needs it).
TEST(Routing, SameBitsForAnyThreadCount) {
  const RoutingShape shape{8 * 16, 32, 4};
  std::vector<float> logits, dweights;
  for (double v : random_vector(shape.tokens * shape.experts, 71)) logits.push_back(float(v));
  for (double v : random_vector(shape.tokens * shape.top_k, 72)) dweights.push_back(float(v));
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    auto r = route(logits, nullptr, shape, {ScoreFunction::kSoftmax, true, 1.0});
    std::vector<float> dscores(logits.size(), 0.0f), dlogits(logits.size());
    const double balance =
        seq_balance_loss_forward(r.scores.data(), r.chosen.data(), shape, 16, 0.01);
    seq_balance_loss_backward(r.scores.data(), r.chosen.data(), shape, 16, 0.01, 1.0f,
                              dscores.data());
    routing_backward(dweights.data(), dscores.data(), r.scores.data(), r.chosen.data(),
                     dlogits.data(), shape, {ScoreFunction::kSoftmax, true, 1.0});
    omp_set_num_threads(saved);
    return std::make_tuple(r.weights, r.chosen, balance, dlogits);
  };
  EXPECT_TRUE(run(1) == run(3));
}
#endif

}  // namespace
}  // namespace baleine::kernels
