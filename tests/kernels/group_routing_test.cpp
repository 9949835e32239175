// Node-limited (group-limited) routing, DeepSeek-V3 §2.1.2 (kernels/routing.h RoutingOptions
// groups / max_groups), against a brute-force reference of the rule.
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

// --- node-limited (group-limited) routing, DeepSeek-V3 §2.1.2 ---------------------------------

RoutingOptions group_options(ScoreFunction score, int64_t groups, int64_t max_groups) {
  RoutingOptions options{score, true, 2.5};
  options.groups = groups;
  options.max_groups = max_groups;
  return options;
}

// The rule written the obvious way, with sorts instead of the kernel's insertion lists:
// group score = sum of the group's 2 highest keys (its only key for 1-expert groups); the
// max_groups best groups are kept. std::stable_sort keeps ties in index order (lower wins).
template <typename T>
std::set<int64_t> brute_force_kept_groups(const T* scores, const T* bias, int64_t experts,
                                          int64_t groups, int64_t max_groups) {
  const int64_t size = experts / groups;
  std::vector<T> group_score(groups);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<T> keys;
    for (int64_t e = g * size; e < (g + 1) * size; ++e) {
      keys.push_back(bias ? T(scores[e] + bias[e]) : scores[e]);
    }
    std::sort(keys.rbegin(), keys.rend());  // descending
    group_score[g] = size == 1 ? keys[0] : T(keys[0] + keys[1]);
  }
  std::vector<int64_t> order(groups);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
  return std::set<int64_t>(order.begin(), order.begin() + max_groups);
}

// Then the top_k by key among the kept groups' experts: brute_force_top_k on the row with every
// other expert's key pushed to -inf (at least top_k experts are kept, so none of those wins).
template <typename T>
std::vector<int32_t> brute_force_group_top_k(const T* scores, const T* bias, RoutingShape shape,
                                             const std::set<int64_t>& kept, int64_t groups) {
  std::vector<T> keys(shape.experts);
  for (int64_t e = 0; e < shape.experts; ++e) {
    keys[e] = kept.count(e / (shape.experts / groups)) ? (bias ? T(scores[e] + bias[e]) : scores[e])
                                                       : -INFINITY;
  }
  return brute_force_top_k<T>(keys.data(), nullptr, shape.experts, shape.top_k);
}

struct GroupCase {
  int64_t experts, groups, max_groups, top_k;
};

// Checks 40 random tokens against the brute force; returns how many of them the limit changed
// (chose differently from the unrestricted top-k), so the caller can insist the draws bite.
template <typename T>
int64_t check_group_limited(GroupCase c, ScoreFunction score, bool with_bias, uint64_t seed) {
  const RoutingShape shape{40, c.experts, c.top_k};
  std::vector<T> logits, bias;
  for (double v : random_vector(shape.tokens * shape.experts, seed, 2.0)) logits.push_back(T(v));
  for (double v : random_vector(shape.experts, seed + 1, 0.3)) bias.push_back(T(v));
  const std::vector<T>* bias_used = with_bias ? &bias : nullptr;
  const T* bias_data = with_bias ? bias.data() : nullptr;
  auto r = route(logits, bias_used, shape, group_options(score, c.groups, c.max_groups));
  const auto unlimited = route(logits, bias_used, shape, group_options(score, 1, 0));
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;  // as in check_against_brute_force
  const int64_t size = c.experts / c.groups;
  int64_t changed = 0;
  for (int64_t t = 0; t < shape.tokens; ++t) {
    const T* row = &r.scores[t * shape.experts];
    const std::vector<int32_t> got(&r.chosen[t * c.top_k], &r.chosen[(t + 1) * c.top_k]);
    const auto kept = brute_force_kept_groups(row, bias_data, c.experts, c.groups, c.max_groups);
    EXPECT_EQ(got, brute_force_group_top_k(row, bias_data, shape, kept, c.groups))
        << "token " << t << " experts=" << c.experts << " groups=" << c.groups
        << " max_groups=" << c.max_groups << " top_k=" << c.top_k;
    std::set<int64_t> reached;
    double chosen_sum = 0;
    for (int32_t e : got) {
      EXPECT_TRUE(kept.count(e / size)) << "expert " << e << " lies outside the kept groups";
      reached.insert(e / size);
      chosen_sum += row[e];
    }
    EXPECT_LE(int64_t(reached.size()), c.max_groups) << "token " << t;
    for (int64_t j = 0; j < c.top_k; ++j) {
      EXPECT_NEAR(r.weights[t * c.top_k + j], 2.5 * row[got[j]] / chosen_sum, tol);
    }
    changed += !std::equal(got.begin(), got.end(), &unlimited.chosen[t * c.top_k]);
  }
  return changed;
}

TEST(GroupRouting, MatchesBruteForce) {
  // 64/8/4/8 is DeepSeek-V3's shape (256 experts, 8 nodes, M = 4, top-8) scaled down; 8/8/3/3
  // has 1-expert groups; 12/4/2/6 needs every expert of the kept groups.
  const GroupCase cases[] = {{16, 4, 2, 4}, {16, 8, 3, 6}, {12, 3, 1, 4}, {8, 8, 3, 3},
                             {64, 8, 4, 8}, {10, 5, 2, 1}, {12, 4, 2, 6}, {6, 2, 1, 3}};
  int64_t changed = 0;
  uint64_t seed = 100;
  for (const GroupCase& c : cases) {
    for (ScoreFunction score : {ScoreFunction::kSigmoid, ScoreFunction::kSoftmax}) {
      for (bool with_bias : {true, false}) {
        changed += check_group_limited<float>(c, score, with_bias, seed);
        changed += check_group_limited<double>(c, score, with_bias, seed);
        seed += 2;
      }
    }
  }
  EXPECT_GT(changed, 100) << "the random draws must often hit the limit to test it";
}

// Keeping every group (or any groups with no limit) is the plain top-k, bit for bit.
TEST(GroupRouting, AllGroupsKeptIsNoLimit) {
  const RoutingShape shape{50, 16, 4};
  std::vector<float> logits, bias;
  for (double v : random_vector(shape.tokens * shape.experts, 81, 2.0)) logits.push_back(float(v));
  for (double v : random_vector(shape.experts, 82, 0.3)) bias.push_back(float(v));
  for (ScoreFunction score : {ScoreFunction::kSigmoid, ScoreFunction::kSoftmax}) {
    const auto plain = route(logits, &bias, shape, group_options(score, 1, 0));
    for (auto [groups, max_groups] : {std::pair<int64_t, int64_t>{4, 4}, {4, 0}, {16, 16},
                                      {2, 2}, {1, 1}, {8, 0}}) {
      const auto r = route(logits, &bias, shape, group_options(score, groups, max_groups));
      EXPECT_TRUE(r.chosen == plain.chosen && r.weights == plain.weights &&
                  r.scores == plain.scores)
          << "groups=" << groups << " max_groups=" << max_groups;
    }
  }
}

// 4 groups of 2. Expert 0 has the highest score but its partner is weak, so group 0's top-2 sum
// (s(3) + s(-3) = 1.00) ranks third behind group 1 (1.70) and group 3 (1.35); group 2 (0.97)
// holds the second-best expert. Unrestricted, the top 3 (0, 4, 2) span groups 0, 2 and 1.
TEST(GroupRouting, HandMadeLimitChangesTheChoice) {
  const RoutingShape shape{1, 8, 3};
  const std::vector<double> logits{3.0, -3.0, 2.0, 1.5, 2.5, -3.0, 1.0, 0.5};
  EXPECT_EQ(route(logits, nullptr, shape, group_options(ScoreFunction::kSigmoid, 4, 0)).chosen,
            (std::vector<int32_t>{0, 4, 2}));
  const auto two = route(logits, nullptr, shape, group_options(ScoreFunction::kSigmoid, 4, 2));
  EXPECT_EQ(two.chosen, (std::vector<int32_t>{2, 3, 6})) << "groups 1 and 3 only";
  const double sum = two.scores[2] + two.scores[3] + two.scores[6];
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(two.weights[j], 2.5 * two.scores[two.chosen[j]] / sum, 1e-15) << "j=" << j;
  }
  EXPECT_EQ(route(logits, nullptr, shape, group_options(ScoreFunction::kSigmoid, 4, 3)).chosen,
            (std::vector<int32_t>{0, 2, 3})) << "group 0 joins at M = 3";
}

// 3 groups of 2 with equal scores (0.5); the bias makes every group's top-2 sum exactly 1.0 while
// expert 4 has the best key. The tie keeps the lower group index.
TEST(GroupRouting, GroupTiesGoToLowerIndex) {
  const RoutingShape shape{1, 6, 1};
  const std::vector<double> logits(6, 0.0), bias{0.0, 0.0, 0.25, -0.25, 0.5, -0.5};
  auto choose = [&](int64_t max_groups) {
    return route(logits, &bias, shape, group_options(ScoreFunction::kSigmoid, 3, max_groups))
        .chosen[0];
  };
  EXPECT_EQ(choose(0), 4);
  EXPECT_EQ(choose(1), 0) << "group 0 wins the three-way tie; expert 0 beats its equal, 1";
  EXPECT_EQ(choose(2), 2) << "groups 0 and 1 kept";
}

TEST(GroupRouting, InvalidOptionsThrow) {
  const RoutingShape shape{2, 8, 3};
  const std::vector<double> logits(16, 0.0);
  auto run = [&](int64_t groups, int64_t max_groups) {
    route(logits, nullptr, shape, group_options(ScoreFunction::kSigmoid, groups, max_groups));
  };
  EXPECT_THROW(run(0, 0), std::invalid_argument);
  EXPECT_THROW(run(-2, 0), std::invalid_argument);
  EXPECT_THROW(run(3, 0), std::invalid_argument) << "8 experts do not split into 3 groups";
  EXPECT_THROW(run(4, -1), std::invalid_argument);
  EXPECT_THROW(run(4, 5), std::invalid_argument);
  EXPECT_THROW(run(4, 1), std::invalid_argument) << "top_k 3 > 1 group x 2 experts";
  EXPECT_NO_THROW(run(4, 2));
  EXPECT_NO_THROW(run(8, 3));
  EXPECT_NO_THROW(run(8, 0));
  try {
    run(3, 0);
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("experts=8 groups=3"), std::string::npos)
        << error.what();
  }
}

#ifdef _OPENMP
TEST(GroupRouting, SameBitsForAnyThreadCount) {
  const RoutingShape shape{300, 64, 8};  // 300·64 scores: above the parallel threshold
  std::vector<float> logits, bias;
  for (double v : random_vector(shape.tokens * shape.experts, 91, 2.0)) logits.push_back(float(v));
  for (double v : random_vector(shape.experts, 92, 0.3)) bias.push_back(float(v));
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    auto r = route(logits, &bias, shape, group_options(ScoreFunction::kSigmoid, 8, 4));
    omp_set_num_threads(saved);
    return std::make_tuple(r.chosen, r.weights);
  };
  EXPECT_TRUE(run(1) == run(3));
}
#endif

}  // namespace
}  // namespace baleine::kernels
