// Token permutation for the dropless MoE layer (kernels/moe_dispatch.h): the expert index
// against a brute-force sort, the permutation against its adjoint, and combine against central
// finite differences (tests/gradcheck.h).
#include "kernels/moe_dispatch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tests/gradcheck.h"
#include "tests/kernels/moe_dispatch_test_support.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

using moe_dispatch_testing::all_experts;
using moe_dispatch_testing::build_index;
using moe_dispatch_testing::ExpertIndex;
using moe_dispatch_testing::random_distinct_choice;

// The index written the obvious way: for each expert in turn, scan the assignments in order.
void expect_matches_brute_force(const std::vector<int32_t>& chosen, int64_t tokens,
                                int64_t top_k, int64_t experts) {
  const auto index = build_index(chosen, tokens, top_k, experts);
  std::vector<int32_t> offsets{0}, row_token, assignment_row(tokens * top_k, -1);
  for (int32_t e = 0; e < experts; ++e) {
    for (int64_t a = 0; a < tokens * top_k; ++a) {
      if (chosen[a] != e) continue;
      assignment_row[a] = int32_t(row_token.size());
      row_token.push_back(int32_t(a / top_k));
    }
    offsets.push_back(int32_t(row_token.size()));
  }
  EXPECT_EQ(index.offsets, offsets);
  EXPECT_EQ(index.row_token, row_token);
  EXPECT_EQ(index.assignment_row, assignment_row);
}

TEST(MoeDispatch, IndexMatchesBruteForceSort) {
  expect_matches_brute_force(random_distinct_choice(37, 3, all_experts(8), 1), 37, 3, 8);
  expect_matches_brute_force(random_distinct_choice(64, 8, all_experts(32), 2), 64, 8, 32);
  expect_matches_brute_force(random_distinct_choice(5, 1, all_experts(4), 3), 5, 1, 4);
  expect_matches_brute_force({}, 0, 2, 4);  // no tokens: all offsets 0
}

TEST(MoeDispatch, EveryAssignmentExactlyOnceAndEmptyExpertsAreFine) {
  const int64_t tokens = 29, top_k = 2, experts = 6;
  // Experts 1, 3 and 4 receive nothing.
  const auto chosen = random_distinct_choice(tokens, top_k, {0, 2, 5}, 4);
  const auto index = build_index(chosen, tokens, top_k, experts);
  EXPECT_EQ(index.offsets.front(), 0);
  EXPECT_EQ(index.offsets.back(), tokens * top_k);
  for (int e : {1, 3, 4}) EXPECT_EQ(index.offsets[e], index.offsets[e + 1]) << "expert " << e;
  std::vector<int> hits(tokens * top_k, 0);
  for (int64_t a = 0; a < tokens * top_k; ++a) {
    const int32_t row = index.assignment_row[a];
    ASSERT_GE(row, 0);
    ASSERT_LT(row, tokens * top_k);
    ++hits[row];
    EXPECT_EQ(index.row_token[row], a / top_k) << "row points back at its token";
    EXPECT_GE(row, index.offsets[chosen[a]]) << "row lies in its expert's block";
    EXPECT_LT(row, index.offsets[chosen[a] + 1]);
  }
  EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  // Within each expert's block, tokens ascend (stable, deterministic).
  for (int64_t e = 0; e < experts; ++e) {
    EXPECT_TRUE(std::is_sorted(index.row_token.begin() + index.offsets[e],
                               index.row_token.begin() + index.offsets[e + 1]));
  }
}

TEST(MoeDispatch, RejectsExpertIdsOutOfRange) {
  EXPECT_THROW(build_index({0, 4}, 1, 2, 4), std::out_of_range);
  EXPECT_THROW(build_index({-1, 0}, 1, 2, 4), std::out_of_range);
}

TEST(MoeDispatch, PermuteCopiesRowsAndBackwardIsItsAdjoint) {
  const int64_t tokens = 23, top_k = 3, experts = 7, dim = 70;  // dim spans two column blocks
  const int64_t rows = tokens * top_k;
  const auto index = build_index(random_distinct_choice(tokens, top_k, all_experts(experts), 5),
                                 tokens, top_k, experts);
  const auto x = random_vector(tokens * dim, 6);
  const auto y = random_vector(rows * dim, 7);
  std::vector<double> px(rows * dim), pty(tokens * dim, 999.0);  // pty must be overwritten
  permute_tokens_forward(x.data(), index.row_token.data(), px.data(), rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < dim; ++c) {
      ASSERT_EQ(px[r * dim + c], x[index.row_token[r] * dim + c]) << "a copy is exact";
    }
  }
  permute_tokens_backward(y.data(), index.row_token.data(), pty.data(), rows, tokens, dim);
  // <Px, y> = <x, Pᵀy>: the same rows·dim products summed in two orders, so they differ by
  // rounding only (~1e-16 · Σ|terms|); 1e-12 relative flags any misplaced or dropped row.
  const double lhs = testing::dot(px, y), rhs = testing::dot(x, pty);
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::max(1.0, std::abs(lhs)));
  // And exactly: with dxe = 1, each token receives one per chosen slot.
  const std::vector<double> ones(rows * dim, 1.0);
  permute_tokens_backward(ones.data(), index.row_token.data(), pty.data(), rows, tokens, dim);
  for (double v : pty) ASSERT_EQ(v, double(top_k));
}

struct CombineCase {
  int64_t tokens = 9, top_k = 3, experts = 5, dim = 6;
  ExpertIndex index;
  std::vector<double> ye, weights, dy;
  CombineCase() {
    index = build_index(random_distinct_choice(tokens, top_k, all_experts(experts), 8), tokens,
                        top_k, experts);
    ye = random_vector(tokens * top_k * dim, 9);
    weights = random_vector(tokens * top_k, 10);
    dy = random_vector(tokens * dim, 11);
  }
  std::vector<double> forward() const {
    std::vector<double> y(tokens * dim, 777.0);  // must be overwritten
    combine_forward(ye.data(), weights.data(), index.assignment_row.data(), y.data(), tokens,
                    top_k, dim);
    return y;
  }
};

TEST(MoeDispatch, CombineForwardMatchesDirectSum) {
  const CombineCase c;
  const auto y = c.forward();
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int64_t d = 0; d < c.dim; ++d) {
      double expected = 0;
      for (int64_t j = 0; j < c.top_k; ++j) {
        expected += c.weights[t * c.top_k + j] *
                    c.ye[c.index.assignment_row[t * c.top_k + j] * c.dim + d];
      }
      EXPECT_NEAR(y[t * c.dim + d], expected, 1e-14) << "same 3 products, same order";
    }
  }
}

TEST(MoeDispatch, CombineGradcheck) {
  CombineCase c;
  std::vector<double> dye(c.ye.size(), 555.0), dweights(c.weights.size(), 555.0);
  combine_backward(c.dy.data(), c.ye.data(), c.weights.data(), c.index.assignment_row.data(),
                   dye.data(), dweights.data(), c.tokens, c.top_k, c.dim);
  auto loss = [&] { return testing::dot(c.forward(), c.dy); };
  // combine is bilinear, so central differences are exact up to rounding: the default 1e-6
  // (tests/gradcheck.h) is very loose here.
  testing::expect_gradient_matches("dye", c.ye, dye, loss);
  testing::expect_gradient_matches("dweights", c.weights, dweights, loss);
}

// The whole dispatch round trip: identity experts and weights summing to 1 return x.
TEST(MoeDispatch, PermuteThenCombineWithIdentityExpertsIsIdentity) {
  const int64_t tokens = 11, top_k = 4, experts = 6, dim = 5;
  const auto index = build_index(random_distinct_choice(tokens, top_k, all_experts(experts), 12),
                                 tokens, top_k, experts);
  const auto x = random_vector(tokens * dim, 13);
  std::vector<double> xe(tokens * top_k * dim), y(tokens * dim);
  const std::vector<double> weights(tokens * top_k, 1.0 / top_k);
  permute_tokens_forward(x.data(), index.row_token.data(), xe.data(), tokens * top_k, dim);
  combine_forward(xe.data(), weights.data(), index.assignment_row.data(), y.data(), tokens, top_k,
                  dim);
  // Four exact quarters summed: a few ulp of rounding at most, far below 1e-14.
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-14) << i;
}

#ifdef _OPENMP
// Bit-identical float results for any thread count (permute_tokens_backward sums several rows
// into one token, the place where a careless parallelisation would reorder the additions).
TEST(MoeDispatch, SameBitsForAnyThreadCount) {
  const int64_t tokens = 64, top_k = 6, experts = 16, dim = 200;
  const int64_t rows = tokens * top_k;
  const auto index = build_index(random_distinct_choice(tokens, top_k, all_experts(experts), 14),
                                 tokens, top_k, experts);
  std::vector<float> dxe, ye, weights, dy;
  for (double v : random_vector(rows * dim, 15)) dxe.push_back(float(v));
  for (double v : random_vector(rows * dim, 16)) ye.push_back(float(v));
  for (double v : random_vector(rows, 17)) weights.push_back(float(v));
  for (double v : random_vector(tokens * dim, 18)) dy.push_back(float(v));
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> dx(tokens * dim), y(tokens * dim), dye(rows * dim), dweights(rows);
    permute_tokens_backward(dxe.data(), index.row_token.data(), dx.data(), rows, tokens, dim);
    combine_forward(ye.data(), weights.data(), index.assignment_row.data(), y.data(), tokens,
                    top_k, dim);
    combine_backward(dy.data(), ye.data(), weights.data(), index.assignment_row.data(),
                     dye.data(), dweights.data(), tokens, top_k, dim);
    omp_set_num_threads(saved);
    return std::vector<std::vector<float>>{dx, y, dye, dweights};
  };
  EXPECT_TRUE(run(1) == run(3));
}
#endif

}  // namespace
}  // namespace baleine::kernels
