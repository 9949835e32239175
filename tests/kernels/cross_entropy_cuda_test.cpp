// The CUDA cross-entropy (kernels/cuda/cross_entropy.h) against the CPU kernels
// (kernels/cross_entropy.h): lse, per-row losses, the mean (left on the device) and dlogits, on
// random non-zero logits spread over ±8, for row counts and vocabularies that are not multiples
// of the block (37 × 1000, 37 × 50257, a vocabulary of 1) and a GPT-2-sized 256 × 50257; the
// mean is reproducible run to run; an out-of-range target gives a NaN loss.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaCrossEntropy, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/cuda/cross_entropy.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::random_ids;
using cuda::testing::relative_error;

class CudaCrossEntropy : public cuda::testing::GpuTest {};

// The GPU's expf and the CPU's vector_exp are each within ~2 ulp of e^x, so a term of Σ exp or
// an element of dlogits differs by at most ~4 ulp (2.4e-7 relative); the FP64 sums add nothing
// that matters and lse's final rounding to FP32 at most 1 ulp: 1e-6 relative, the elementwise
// FP32 tolerance of tests/kernels/cuda_test_support.h.
constexpr double kTolerance = 1e-6;

struct Shape {
  int64_t rows, vocab;
};
constexpr Shape kShapes[] = {{37, 1000}, {37, 50257}, {256, 50257}, {5, 1}};

std::vector<float> logits_of(const Shape& s, uint32_t seed) {
  return random_floats(s.rows * s.vocab, seed, 0.05f, 8.0f);
}

TEST_F(CudaCrossEntropy, ForwardMatchesTheCpu) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + " x " + std::to_string(s.vocab));
    const std::vector<float> logits = logits_of(s, 1);
    const std::vector<int32_t> targets = random_ids(s.rows, int32_t(s.vocab), 2);

    std::vector<float> cpu_lse(s.rows);
    const double cpu_mean =
        cross_entropy_forward(logits.data(), targets.data(), cpu_lse.data(), s.rows, s.vocab);
    // Per-row losses from the double instantiation (std::exp): the CPU keeps its float rows'
    // losses internal.
    const std::vector<double> logits64(logits.begin(), logits.end());
    std::vector<double> lse64(s.rows);
    cross_entropy_forward(logits64.data(), targets.data(), lse64.data(), s.rows, s.vocab);
    std::vector<double> want_row_loss(s.rows);
    for (int64_t r = 0; r < s.rows; ++r) {
      want_row_loss[r] = lse64[r] - logits64[r * s.vocab + targets[r]];
    }

    auto d_logits = upload(logits);
    auto d_targets = upload(targets);
    auto d_lse = empty<float>(s.rows);
    auto d_row_loss = empty<double>(s.rows);
    auto d_mean = empty<double>(1);
    cuda::cross_entropy_forward(d_logits.data(), d_targets.data(), d_lse.data(),
                                d_row_loss.data(), d_mean.data(), s.rows, s.vocab, stream());
    const double mean = download(d_mean)[0];

    EXPECT_LE(relative_error(download(d_lse), cpu_lse), kTolerance);
    EXPECT_LE(relative_error(download(d_row_loss), want_row_loss), kTolerance);
    EXPECT_NEAR(mean, cpu_mean, kTolerance * std::fabs(cpu_mean));
    if (s.vocab == 1) {
      EXPECT_EQ(mean, 0.0);  // one logit: softmax is 1, the loss exactly 0
    }
  }
}

TEST_F(CudaCrossEntropy, BackwardMatchesTheCpu) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(std::to_string(s.rows) + " x " + std::to_string(s.vocab));
    const std::vector<float> logits = logits_of(s, 3);
    const std::vector<int32_t> targets = random_ids(s.rows, int32_t(s.vocab), 4);
    // Both backwards read the same lse (the CPU's), so only the backward is compared.
    std::vector<float> lse(s.rows);
    cross_entropy_forward(logits.data(), targets.data(), lse.data(), s.rows, s.vocab);
    const float scale = 0.5f / float(s.rows);  // d(mean loss) times an upstream 0.5

    std::vector<float> want(logits.size());
    cross_entropy_backward(logits.data(), targets.data(), lse.data(), scale, want.data(), s.rows,
                           s.vocab);
    auto d_logits = upload(logits);
    auto d_targets = upload(targets);
    auto d_lse = upload(lse);
    auto d_dlogits = upload(random_floats(s.rows * s.vocab, 5));  // overwritten
    cuda::cross_entropy_backward(d_logits.data(), d_targets.data(), d_lse.data(), scale,
                                 d_dlogits.data(), s.rows, s.vocab, stream());
    const std::vector<float> got = download(d_dlogits);
    EXPECT_LE(relative_error(got, want), kTolerance);
    // The −scale lands on the target: scale · (p − 1) < 0 there (exactly 0 for one logit).
    for (int64_t r = 0; r < s.rows; ++r) {
      const float at_target = got[r * s.vocab + targets[r]];
      if (s.vocab > 1) {
        EXPECT_LT(at_target, 0.0f) << "row " << r;
      } else {
        EXPECT_EQ(at_target, 0.0f) << "row " << r;
      }
    }
  }
}

TEST_F(CudaCrossEntropy, MeanIsTheSameEveryRun) {
  const Shape s{1000, 777};
  auto d_logits = upload(logits_of(s, 6));
  auto d_targets = upload(random_ids(s.rows, int32_t(s.vocab), 7));
  auto d_lse = empty<float>(s.rows);
  auto d_row_loss = empty<double>(s.rows);
  auto d_mean = empty<double>(1);
  std::vector<double> means;
  for (int run = 0; run < 3; ++run) {
    cuda::cross_entropy_forward(d_logits.data(), d_targets.data(), d_lse.data(),
                                d_row_loss.data(), d_mean.data(), s.rows, s.vocab, stream());
    means.push_back(download(d_mean)[0]);
  }
  EXPECT_EQ(means[1], means[0]);
  EXPECT_EQ(means[2], means[0]);
}

TEST_F(CudaCrossEntropy, OutOfRangeTargetGivesNanLossAndNoTargetTerm) {
  const Shape s{3, 100};
  const std::vector<float> logits = logits_of(s, 8);
  auto d_logits = upload(logits);
  auto d_targets = upload(std::vector<int32_t>{5, -1, 100});
  auto d_lse = empty<float>(s.rows);
  auto d_row_loss = empty<double>(s.rows);
  cuda::cross_entropy_forward(d_logits.data(), d_targets.data(), d_lse.data(),
                              d_row_loss.data(), nullptr, s.rows, s.vocab, stream());
  const std::vector<double> row_loss = download(d_row_loss);
  EXPECT_TRUE(std::isfinite(row_loss[0]));
  EXPECT_TRUE(std::isnan(row_loss[1]));
  EXPECT_TRUE(std::isnan(row_loss[2]));

  auto d_dlogits = empty<float>(s.rows * s.vocab);
  cuda::cross_entropy_backward(d_logits.data(), d_targets.data(), d_lse.data(), 1.0f,
                               d_dlogits.data(), s.rows, s.vocab, stream());
  const std::vector<float> grad = download(d_dlogits);
  for (int64_t j = s.vocab; j < 3 * s.vocab; ++j) EXPECT_GT(grad[j], 0.0f) << j;
}

TEST_F(CudaCrossEntropy, NoRowsGiveAZeroMean) {
  auto d_mean = upload(std::vector<double>{42.0});
  cuda::cross_entropy_forward(nullptr, nullptr, nullptr, nullptr, d_mean.data(), 0, 50257,
                              stream());
  EXPECT_EQ(download(d_mean)[0], 0.0);
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
