// The CUDA routing kernels (kernels/cuda/routing.h) against the CPU kernels (kernels/routing.h)
// on the same inputs:
//   - routing_forward: sigmoid and softmax, normalize on and off, route_scale 2.5, with and
//     without bias, unlimited and node-limited (64 experts / 8 groups / max 4 / top-8 and
//     others), token counts that are not multiples of a block's 8 tokens, 8 to 256 experts,
//     top_k 1 to 32; exact ties (quantized logits) must go to the lower index on both;
//   - routing_backward, seq_balance_loss_forward / _backward on the CPU forward's outputs;
//   - the limits and checks that throw before anything runs (no GPU needed).
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#include "kernels/cuda/routing.h"

#ifndef BALEINE_HAVE_CUDA

TEST(CudaRouting, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/routing.h"
#include "tests/kernels/cuda_test_support.h"
#include "tests/kernels/routing_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::DeviceBuffer;
using cuda::testing::random_floats;
using cuda::testing::relative_error;
using routing_testing::RoutedT;
using Routed = RoutedT<float>;

// Scores and weights: the GPU's expf is within 2 ulp, glibc's within 1; a score carries that
// plus a division (softmax: the total's error too), a weight the errors of its score and of the
// chosen sum: at worst ~15 ulp ≈ 2e-6 relative, typically ~1e-7. 4e-6 per element and 1e-6 for
// the norm leave room for that; a wrong formula (bias in the weights, a missing normalisation,
// the wrong route_scale) is off by 1e-2 or more.
constexpr double kScoreTolerance = 4e-6;
constexpr double kScoreNormTolerance = 1e-6;
// Keys differ between CPU and GPU by at most ~4e-7 (a score's error plus the key's rounding),
// group keys by ~1e-6. A token whose ranking has two keys (or kept-group boundary keys) closer
// than this may legitimately choose differently; every other token must choose identically.
constexpr double kNearTie = 4e-6;

RoutingOptions make_options(ScoreFunction score, bool normalize, int64_t groups = 1,
                            int64_t max_groups = 0) {
  RoutingOptions options{score, normalize, 2.5};
  options.groups = groups;
  options.max_groups = max_groups;
  return options;
}

bool is_limited(RoutingOptions options) {
  return options.max_groups > 0 && options.max_groups < options.groups;
}

// The smallest gap between consecutive values among the count + 1 largest of v (only the
// boundary one, between the count-th and the next, when the order among them does not matter).
double gap_among_best(std::vector<float> v, int64_t count, bool order_matters) {
  std::sort(v.rbegin(), v.rend());
  double gap = INFINITY;
  for (int64_t i = order_matters ? 0 : count - 1; i < count && i + 1 < int64_t(v.size()); ++i) {
    gap = std::min(gap, double(v[i]) - double(v[i + 1]));
  }
  return gap;
}

// How close token t's selection (on the CPU's scores) is to changing: the gaps between the
// ranked keys of the chosen experts and the best unchosen one and, under node-limited routing,
// the gap at the boundary of the kept groups.
double selection_margin(const Routed& cpu, const std::vector<float>* bias, RoutingShape shape,
                        RoutingOptions options, int64_t t) {
  const float* s = &cpu.scores[t * shape.experts];
  std::vector<float> keys(shape.experts);
  for (int64_t e = 0; e < shape.experts; ++e) keys[e] = bias ? float(s[e] + (*bias)[e]) : s[e];
  if (!is_limited(options)) return gap_among_best(keys, shape.top_k, true);
  const int64_t size = shape.experts / options.groups;
  std::vector<float> group_keys(options.groups);
  for (int64_t g = 0; g < options.groups; ++g) {
    std::vector<float> group(keys.begin() + g * size, keys.begin() + (g + 1) * size);
    std::sort(group.rbegin(), group.rend());
    group_keys[g] = size == 1 ? group[0] : float(group[0] + group[1]);
  }
  double margin = gap_among_best(group_keys, options.max_groups, false);
  // The experts of the kept groups (the CPU kept them; a near-tie there is caught above).
  std::vector<int64_t> order(options.groups);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return group_keys[a] > group_keys[b]; });
  std::vector<float> competing;
  for (int64_t j = 0; j < options.max_groups; ++j) {
    competing.insert(competing.end(), keys.begin() + order[j] * size,
                     keys.begin() + (order[j] + 1) * size);
  }
  return std::min(margin, gap_among_best(competing, shape.top_k, true));
}

class CudaRouting : public cuda::testing::GpuTest {
 protected:
  Routed route_on_gpu(const std::vector<float>& logits, const std::vector<float>* bias,
                      RoutingShape shape, RoutingOptions options) {
    auto device_logits = upload(logits);
    DeviceBuffer<float> device_bias;
    if (bias != nullptr) device_bias = upload(*bias);
    // Pre-filled with values no kernel writes, so an element left unwritten shows.
    auto scores = upload(std::vector<float>(shape.tokens * shape.experts, 777.0f));
    auto chosen = upload(std::vector<int32_t>(shape.tokens * shape.top_k, -7));
    auto weights = upload(std::vector<float>(shape.tokens * shape.top_k, 777.0f));
    cuda::routing_forward(device_logits.data(), bias ? device_bias.data() : nullptr,
                          scores.data(), chosen.data(), weights.data(), shape, options, stream());
    return Routed{download(scores), download(weights), download(chosen)};
  }

  // GPU against CPU on one input. Tokens whose selection is within kNearTie of changing are
  // not compared (their count is added to near_ties); all others must choose exactly the CPU's
  // experts in the CPU's order, with weights within kScoreTolerance.
  void expect_forward_matches(const std::vector<float>& logits, const std::vector<float>* bias,
                              RoutingShape shape, RoutingOptions options, const std::string& what,
                              int64_t& near_ties) {
    const Routed cpu = routing_testing::route(logits, bias, shape, options);
    const Routed gpu = route_on_gpu(logits, bias, shape, options);
    for (size_t i = 0; i < cpu.scores.size(); ++i) {
      ASSERT_LE(std::abs(gpu.scores[i] - cpu.scores[i]), kScoreTolerance * std::abs(cpu.scores[i]))
          << what << " score " << i << ": gpu " << gpu.scores[i] << " cpu " << cpu.scores[i];
    }
    EXPECT_LE(relative_error(gpu.scores, cpu.scores), kScoreNormTolerance) << what;
    for (int64_t t = 0; t < shape.tokens; ++t) {
      if (selection_margin(cpu, bias, shape, options, t) < kNearTie) {
        ++near_ties;
        continue;
      }
      for (int64_t j = 0; j < shape.top_k; ++j) {
        const int64_t a = t * shape.top_k + j;
        ASSERT_EQ(gpu.chosen[a], cpu.chosen[a]) << what << " token " << t << " slot " << j;
        ASSERT_LE(std::abs(gpu.weights[a] - cpu.weights[a]),
                  kScoreTolerance * std::abs(cpu.weights[a]))
            << what << " token " << t << " slot " << j;
      }
    }
  }
};

struct ForwardCase {
  int64_t tokens, experts, top_k, groups, max_groups;
  bool limit_bites;  // the limit must change some token's choice (so the test can see it)
};

TEST_F(CudaRouting, ForwardMatchesCpu) {
  // 64/8/4/8 is DeepSeek-V3's node limit scaled down, 256/8/4/8 its full size; 96/3/1 leaves
  // lanes with 3 experts; 8/8/3/3 has 1-expert groups; 12/4/2/6 needs every expert of the kept
  // groups; 33 experts leave 31 lanes with one; top_k 32 fills every lane's slot.
  const ForwardCase cases[] = {
      {37, 8, 3, 1, 0, false},     {1000, 64, 8, 1, 0, false},  {1000, 64, 8, 8, 4, true},
      {37, 256, 8, 8, 4, true},    {1000, 256, 8, 1, 0, false}, {37, 96, 6, 3, 1, true},
      {100, 8, 3, 8, 3, false},    {37, 12, 6, 4, 2, true},     {1000, 33, 1, 1, 0, false},
      {37, 64, 32, 1, 0, false},   {45, 64, 8, 8, 8, false},
  };
  uint32_t seed = 1;
  for (const ForwardCase& c : cases) {
    const RoutingShape shape{c.tokens, c.experts, c.top_k};
    int64_t compared = 0, near_ties = 0, limit_changed = 0;
    for (ScoreFunction score : {ScoreFunction::kSigmoid, ScoreFunction::kSoftmax}) {
      for (bool normalize : {true, false}) {
        for (bool with_bias : {true, false}) {
          const auto logits = random_floats(c.tokens * c.experts, seed++, 0.05f, 3.0f);
          const auto bias = random_floats(c.experts, seed++, 0.01f, 0.3f);
          const std::vector<float>* bias_used = with_bias ? &bias : nullptr;
          const RoutingOptions options = make_options(score, normalize, c.groups, c.max_groups);
          const std::string what = "tokens=" + std::to_string(c.tokens) +
                                   " experts=" + std::to_string(c.experts) +
                                   " top_k=" + std::to_string(c.top_k) +
                                   " groups=" + std::to_string(c.groups) +
                                   " max_groups=" + std::to_string(c.max_groups) +
                                   (score == ScoreFunction::kSigmoid ? " sigmoid" : " softmax") +
                                   (normalize ? " normalized" : "") + (with_bias ? " bias" : "");
          expect_forward_matches(logits, bias_used, shape, options, what, near_ties);
          if (HasFatalFailure()) return;
          compared += c.tokens;
          const auto limited = routing_testing::route(logits, bias_used, shape, options);
          const auto unlimited =
              routing_testing::route(logits, bias_used, shape, make_options(score, normalize));
          for (int64_t t = 0; t < c.tokens; ++t) {
            const int32_t* row = limited.chosen.data() + t * c.top_k;
            limit_changed += !std::equal(row, row + c.top_k,
                                         unlimited.chosen.data() + t * c.top_k);
          }
        }
      }
    }
    EXPECT_LE(near_ties, compared / 20) << "too few tokens compared exactly for experts="
                                        << c.experts << " (near ties: " << near_ties << ")";
    if (c.limit_bites) {
      EXPECT_GT(limit_changed, compared / 20)
          << "the node limit must change many choices to be tested, experts=" << c.experts;
    }
  }
}

// Quantized logits (and bias): many experts share a key EXACTLY, on both devices alike (same
// inputs, same arithmetic), while distinct keys are >= 0.018 apart. Every token must choose
// exactly the CPU's experts: ties to the lower index, for experts and for groups.
//   sigmoid keys: s(-1) = 0.269, s(0) = 0.5, s(2) = 0.881, plus 0 or 0.25 of bias; group sums
//   of two unbiased keys are 0.54, 0.77, 1.0, 1.15, 1.38, 1.76. Softmax: the three levels of a
//   row are in ratios 1 : e : e³, and so are their pair sums. (With a bias the group sums of
//   different pairs can coincide up to rounding, e.g. s(-1) + s(2) + 0.25 vs …, so node-limited
//   routing is tied without bias only.)
TEST_F(CudaRouting, ExactTiesGoToTheLowerIndex) {
  const RoutingShape shape{1000, 64, 8};
  const float levels[] = {-1.0f, 0.0f, 2.0f};
  const auto draws = cuda::testing::random_ids(shape.tokens * shape.experts, 3, 11);
  std::vector<float> logits(draws.size());
  for (size_t i = 0; i < draws.size(); ++i) logits[i] = levels[draws[i]];
  std::vector<float> bias(shape.experts);
  const auto bias_draws = cuda::testing::random_ids(shape.experts, 2, 12);
  for (int64_t e = 0; e < shape.experts; ++e) bias[e] = bias_draws[e] ? 0.25f : 0.0f;

  struct TieCase {
    ScoreFunction score;
    bool with_bias;
    int64_t groups, max_groups;
  };
  const TieCase cases[] = {{ScoreFunction::kSigmoid, true, 1, 0},
                           {ScoreFunction::kSigmoid, false, 8, 4},
                           {ScoreFunction::kSoftmax, false, 1, 0},
                           {ScoreFunction::kSoftmax, false, 8, 4}};
  for (const TieCase& c : cases) {
    const std::vector<float>* bias_used = c.with_bias ? &bias : nullptr;
    const RoutingOptions options = make_options(c.score, true, c.groups, c.max_groups);
    const Routed cpu = routing_testing::route(logits, bias_used, shape, options);
    const Routed gpu = route_on_gpu(logits, bias_used, shape, options);
    EXPECT_EQ(gpu.chosen, cpu.chosen) << "groups=" << c.groups << " bias=" << c.with_bias;
    EXPECT_LE(relative_error(gpu.weights, cpu.weights), kScoreNormTolerance);
    // The ties must matter: at the boundary, an unchosen expert with the last chosen key.
    int64_t boundary_ties = 0;
    for (int64_t t = 0; t < shape.tokens; ++t) {
      const float* s = &cpu.scores[t * shape.experts];
      auto key = [&](int64_t e) { return bias_used ? float(s[e] + bias[e]) : s[e]; };
      const int32_t* c_row = &cpu.chosen[t * shape.top_k];
      const float last = key(c_row[shape.top_k - 1]);
      for (int64_t e = 0; e < shape.experts; ++e) {
        if (std::find(c_row, c_row + shape.top_k, e) == c_row + shape.top_k && key(e) == last) {
          ++boundary_ties;
          break;
        }
      }
    }
    EXPECT_GT(boundary_ties, shape.tokens / 2) << "the draws must produce ties to test them";
  }
}

// Hand-made ties (tests/kernels/group_routing_test.cpp): every score is exactly 0.5 = s(0).
TEST_F(CudaRouting, HandMadeTies) {
  // All keys equal: the lowest experts, and under a node limit the lowest groups.
  const RoutingShape shape{3, 64, 8};
  const std::vector<float> logits(shape.tokens * shape.experts, 0.0f);
  std::vector<int32_t> first(shape.top_k);
  std::iota(first.begin(), first.end(), 0);
  for (auto [groups, max_groups] : {std::pair<int64_t, int64_t>{1, 0}, {8, 4}, {8, 1}}) {
    const auto gpu = route_on_gpu(logits, nullptr, shape,
                                  make_options(ScoreFunction::kSigmoid, true, groups, max_groups));
    for (int64_t t = 0; t < shape.tokens; ++t) {
      const int32_t* row = gpu.chosen.data() + t * shape.top_k;
      EXPECT_EQ(std::vector<int32_t>(row, row + shape.top_k), first)
          << "groups=" << groups << " max_groups=" << max_groups << " token " << t;
    }
  }
  // 3 groups of 2 whose top-2 sums all equal 1.0 while expert 4 has the best key: the tie
  // keeps the lower group index.
  const RoutingShape small{1, 6, 1};
  const std::vector<float> zeros(6, 0.0f), bias{0.0f, 0.0f, 0.25f, -0.25f, 0.5f, -0.5f};
  auto choose = [&](int64_t max_groups) {
    return route_on_gpu(zeros, &bias, small,
                        make_options(ScoreFunction::kSigmoid, true, 3, max_groups))
        .chosen[0];
  };
  EXPECT_EQ(choose(0), 4);
  EXPECT_EQ(choose(1), 0) << "group 0 wins the three-way tie; expert 0 beats its equal, 1";
  EXPECT_EQ(choose(2), 2) << "groups 0 and 1 kept";
}

TEST_F(CudaRouting, BackwardMatchesCpu) {
  const RoutingShape shapes[] = {{37, 8, 3}, {1000, 64, 8}, {37, 256, 8}, {1000, 33, 1},
                                 {37, 64, 32}};
  uint32_t seed = 100;
  for (const RoutingShape& shape : shapes) {
    for (ScoreFunction score : {ScoreFunction::kSigmoid, ScoreFunction::kSoftmax}) {
      for (bool normalize : {true, false}) {
        for (bool with_extra : {true, false}) {
          const RoutingOptions options = make_options(score, normalize);
          const auto logits = random_floats(shape.tokens * shape.experts, seed++, 0.05f, 3.0f);
          const Routed routed = routing_testing::route(logits, nullptr, shape, options);
          const auto dweights = random_floats(shape.tokens * shape.top_k, seed++);
          const auto extra = random_floats(shape.tokens * shape.experts, seed++);
          std::vector<float> want(logits.size());
          routing_backward(dweights.data(), with_extra ? extra.data() : nullptr,
                           routed.scores.data(), routed.chosen.data(), want.data(), shape,
                           options);
          auto device_dweights = upload(dweights);
          auto device_extra = upload(extra);
          auto device_scores = upload(routed.scores);
          auto device_chosen = upload(routed.chosen);
          auto dlogits = upload(std::vector<float>(logits.size(), 12345.0f));  // overwritten
          cuda::routing_backward(device_dweights.data(),
                                 with_extra ? device_extra.data() : nullptr,
                                 device_scores.data(), device_chosen.data(), dlogits.data(), shape,
                                 options, stream());
          // All intermediate math is in double on both sides in the same formulas; only the
          // order of the softmax projection's double sum differs, so a float result differs by
          // at most 1 ulp where the double lands on a rounding boundary: ~1e-8 for the norm.
          EXPECT_LE(relative_error(download(dlogits), want), 1e-6)
              << "experts=" << shape.experts << " top_k=" << shape.top_k
              << (score == ScoreFunction::kSigmoid ? " sigmoid" : " softmax")
              << (normalize ? " normalized" : "") << (with_extra ? " extra" : "");
        }
      }
    }
  }
}

struct LossCase {
  int64_t seq_len, sequences, experts, top_k;
};
const LossCase kLossCases[] = {{37, 5, 64, 8}, {1000, 2, 256, 8}, {1, 3, 8, 3}, {100, 11, 33, 4}};

TEST_F(CudaRouting, BalanceLossForwardMatchesCpu) {
  uint32_t seed = 200;
  for (const LossCase& c : kLossCases) {
    const RoutingShape shape{c.seq_len * c.sequences, c.experts, c.top_k};
    for (ScoreFunction score : {ScoreFunction::kSigmoid, ScoreFunction::kSoftmax}) {
      const auto logits = random_floats(shape.tokens * shape.experts, seed++, 0.05f, 3.0f);
      const Routed routed =
          routing_testing::route(logits, nullptr, shape, make_options(score, true));
      const double alpha = 0.7;
      const double want = seq_balance_loss_forward(routed.scores.data(), routed.chosen.data(),
                                                   shape, c.seq_len, alpha);
      auto scores = upload(routed.scores);
      auto chosen = upload(routed.chosen);
      auto loss = upload(std::vector<double>{-1.0});
      const size_t bytes = cuda::seq_balance_loss_forward_workspace_bytes(shape, c.seq_len);
      auto workspace = empty<double>(int64_t(bytes / sizeof(double)));
      cuda::seq_balance_loss_forward(scores.data(), chosen.data(), shape, c.seq_len, alpha,
                                     loss.data(), workspace.data(), stream());
      // The same double arithmetic on the same float inputs; only the order of the (positive)
      // double sums and fused multiply-adds differ: ~1e-16 · terms ≈ 1e-13 at most here.
      EXPECT_NEAR(download(loss)[0], want, 1e-12 * want)
          << "seq_len=" << c.seq_len << " sequences=" << c.sequences;
    }
  }
  // No tokens: the CPU returns 0, the GPU writes 0.
  auto loss = upload(std::vector<double>{-1.0});
  cuda::seq_balance_loss_forward(nullptr, nullptr, RoutingShape{0, 8, 2}, 4, 0.5, loss.data(),
                                 nullptr, stream());
  EXPECT_EQ(download(loss)[0], 0.0);
}

TEST_F(CudaRouting, BalanceLossBackwardAccumulatesLikeCpu) {
  uint32_t seed = 300;
  for (const LossCase& c : kLossCases) {
    const RoutingShape shape{c.seq_len * c.sequences, c.experts, c.top_k};
    const auto logits = random_floats(shape.tokens * shape.experts, seed++, 0.05f, 3.0f);
    const Routed routed =
        routing_testing::route(logits, nullptr, shape, make_options(ScoreFunction::kSigmoid, true));
    const double alpha = 0.7;
    const float dloss = 1.3f;
    // A prefill of the gradient's own size, so a kernel that overwrites instead of adding, or
    // adds a wrong gradient, cannot hide under it.
    std::vector<float> gradient(routed.scores.size(), 0.0f);
    seq_balance_loss_backward(routed.scores.data(), routed.chosen.data(), shape, c.seq_len,
                              alpha, dloss, gradient.data());
    float largest = 0;
    for (float g : gradient) largest = std::max(largest, std::abs(g));
    ASSERT_GT(largest, 0.0f);
    std::vector<float> prefill = random_floats(int64_t(gradient.size()), seed++);
    for (float& v : prefill) v *= largest;
    std::vector<float> want = prefill;
    seq_balance_loss_backward(routed.scores.data(), routed.chosen.data(), shape, c.seq_len,
                              alpha, dloss, want.data());
    auto scores = upload(routed.scores);
    auto chosen = upload(routed.chosen);
    auto dscores = upload(prefill);
    cuda::seq_balance_loss_backward(scores.data(), chosen.data(), shape, c.seq_len, alpha, dloss,
                                    dscores.data(), stream());
    const auto got = download(dscores);
    std::vector<double> got_added(got.size()), want_added(got.size());
    for (size_t i = 0; i < got.size(); ++i) {
      got_added[i] = double(got[i]) - prefill[i];
      want_added[i] = double(want[i]) - prefill[i];
    }
    // Both add the same double-computed gradient, rounded to float, to the same prefill; the
    // double sums differ only in order, so a sum differs by at most 1 ulp of the (similarly
    // sized) result, and only where it lies on a rounding boundary: ~1e-8 for the norm.
    EXPECT_LE(relative_error(got_added, want_added), 1e-6)
        << "seq_len=" << c.seq_len << " sequences=" << c.sequences;
  }
}

// ---- checks before anything runs: no GPU needed -------------------------------------------

TEST(CudaRoutingLimits, RejectsWhatItCannotRun) {
  auto forward = [](RoutingShape shape, RoutingOptions options) {
    cuda::routing_forward(nullptr, nullptr, nullptr, nullptr, nullptr, shape, options, nullptr);
  };
  const RoutingOptions plain = make_options(ScoreFunction::kSigmoid, true);
  EXPECT_THROW(forward({0, 300, 8}, plain), std::invalid_argument) << "experts > 256";
  EXPECT_THROW(forward({0, 256, 33}, plain), std::invalid_argument) << "top_k > 32";
  EXPECT_THROW(forward({0, 8, 9}, plain), std::invalid_argument) << "top_k > experts";
  EXPECT_THROW(forward({0, 128, 8}, make_options(ScoreFunction::kSigmoid, true, 64, 8)),
               std::invalid_argument)
      << "node-limited routing over more than 32 groups";
  EXPECT_THROW(forward({0, 8, 3}, make_options(ScoreFunction::kSigmoid, true, 3, 0)),
               std::invalid_argument)
      << "8 experts do not split into 3 groups";
  EXPECT_THROW(forward({0, 8, 3}, make_options(ScoreFunction::kSigmoid, true, 4, 1)),
               std::invalid_argument)
      << "top_k 3 > 1 group x 2 experts";
  // No tokens: nothing to do, nothing launched (the null pointers are never read).
  EXPECT_NO_THROW(forward({0, 256, 8}, make_options(ScoreFunction::kSigmoid, true, 8, 4)));
  EXPECT_NO_THROW(forward({0, 128, 8}, make_options(ScoreFunction::kSigmoid, true, 64, 0)))
      << "more than 32 groups are fine without a limit";
  EXPECT_THROW(cuda::routing_backward(nullptr, nullptr, nullptr, nullptr, nullptr, {0, 300, 8},
                                      plain, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda::seq_balance_loss_backward(nullptr, nullptr, {10, 8, 2}, 3, 1.0, 1.0f,
                                               nullptr, nullptr),
               std::invalid_argument)
      << "10 tokens are not whole sequences of 3";
  EXPECT_THROW(cuda::seq_balance_loss_forward_workspace_bytes({8, 4096, 2}, 4),
               std::invalid_argument)
      << "experts > 2048";
  EXPECT_EQ(cuda::seq_balance_loss_forward_workspace_bytes({12, 8, 2}, 4), 3 * sizeof(double));
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
