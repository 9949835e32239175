// The CUDA RMSNorm (kernels/cuda/rmsnorm.h) against kernels::*rmsnorm*<float>:
//   - forward and the fused residual forward (h bit for bit: one addition; h aliasing x, then
//     branch), on rows × dim of 37 × 257, 37 × 1000, 64 × 8192 (1024-thread blocks) and
//     4096 × 2048;
//   - backward with and without the residual, dx aliasing dy, dweight starting non-zero
//     (accumulation), row counts below, between and above the 512 partial dweight rows
//     (37, 1000, 4096), a workspace full of NaN (its contents must not matter);
//   - the backward run twice gives the same bits (determinism of the dweight reduction).
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaRmsNorm, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/rmsnorm.h"
#include "kernels/rmsnorm.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::relative_error;

class CudaRmsNorm : public cuda::testing::GpuTest {};

// Reductions: the GPU sums a row (x², g·x) in float, per thread and then in a fixed tree, where
// the CPU sums in double; dweight sums up to 4096 rows (float within a block, double across
// blocks). The rounding error is ~log2(L)·2⁻²⁴ to √L·2⁻²⁴ relative for L terms, ~1e-7 here;
// 1e-5 (cuda_test_support.h) leaves room and still catches any wrong term (O(1e-2) or more).
constexpr double kTolerance = 1e-5;
constexpr float kEps = 1e-5f;

struct Shape {
  int64_t rows, dim;
};
std::string describe(const Shape& s) {
  return std::to_string(s.rows) + " × " + std::to_string(s.dim);
}
const std::vector<Shape> kShapes = {{37, 257}, {37, 1000}, {1000, 1000}, {64, 8192},
                                    {4096, 2048}};

int64_t first_bit_difference(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  return -1;
}

TEST(CudaRmsNormWorkspace, SizedByShapeAndBoundedInRows) {
  EXPECT_EQ(cuda::rmsnorm_backward_workspace_floats(0, 2048), 0);
  EXPECT_EQ(cuda::rmsnorm_backward_workspace_floats(37, 0), 0);
  EXPECT_GE(cuda::rmsnorm_backward_workspace_floats(37, 257), 257);
  EXPECT_LE(cuda::rmsnorm_backward_workspace_floats(37, 257), 37 * 257);
  // The partial sums do not grow with the token count.
  EXPECT_EQ(cuda::rmsnorm_backward_workspace_floats(1 << 16, 2048),
            cuda::rmsnorm_backward_workspace_floats(1 << 12, 2048));
}

TEST_F(CudaRmsNorm, ForwardMatchesTheCpu) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(describe(s));
    const auto x = random_floats(s.rows * s.dim, 1), w = random_floats(s.dim, 2);
    std::vector<float> y(x.size()), rstd(static_cast<size_t>(s.rows));
    rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), s.rows, s.dim, kEps);
    ASSERT_GT(relative_error(y, x), 0.1);  // the reference is not the input

    auto d_x = upload(x), d_w = upload(w);
    auto d_y = empty<float>(s.rows * s.dim), d_rstd = empty<float>(s.rows);
    cuda::rmsnorm_forward(d_x.data(), d_w.data(), d_y.data(), d_rstd.data(), s.rows, s.dim, kEps,
                          stream());
    EXPECT_LE(relative_error(download(d_y), y), kTolerance);
    EXPECT_LE(relative_error(download(d_rstd), rstd), kTolerance);
  }
}

// h = x + branch into its own buffer, over x, then over branch.
TEST_F(CudaRmsNorm, ResidualForwardMatchesTheCpu) {
  enum class HAliases { kNothing, kX, kBranch };
  for (const Shape& s : kShapes) {
    for (const HAliases alias : {HAliases::kNothing, HAliases::kX, HAliases::kBranch}) {
      SCOPED_TRACE(describe(s) + ", h aliasing " + std::to_string(int(alias)));
      const auto x = random_floats(s.rows * s.dim, 3), branch = random_floats(s.rows * s.dim, 4),
                 w = random_floats(s.dim, 5);
      std::vector<float> h(x.size()), y(x.size()), rstd(static_cast<size_t>(s.rows));
      residual_rmsnorm_forward(x.data(), branch.data(), h.data(), w.data(), y.data(), rstd.data(),
                               s.rows, s.dim, kEps);

      auto d_x = upload(x), d_branch = upload(branch), d_w = upload(w);
      auto d_h_own = empty<float>(s.rows * s.dim);
      auto& d_h = alias == HAliases::kX ? d_x : alias == HAliases::kBranch ? d_branch : d_h_own;
      auto d_y = empty<float>(s.rows * s.dim), d_rstd = empty<float>(s.rows);
      cuda::residual_rmsnorm_forward(d_x.data(), d_branch.data(), d_h.data(), d_w.data(),
                                     d_y.data(), d_rstd.data(), s.rows, s.dim, kEps, stream());
      EXPECT_EQ(first_bit_difference(download(d_h), h), -1);  // one IEEE addition
      EXPECT_LE(relative_error(download(d_y), y), kTolerance);
      EXPECT_LE(relative_error(download(d_rstd), rstd), kTolerance);
    }
  }
}

struct BackwardCase {
  bool residual, dx_aliases_dy;
};

TEST_F(CudaRmsNorm, BackwardMatchesTheCpu) {
  for (const Shape& s : kShapes) {
    for (const BackwardCase c : {BackwardCase{false, false}, BackwardCase{true, false},
                                 BackwardCase{false, true}, BackwardCase{true, true}}) {
      SCOPED_TRACE(describe(s) + (c.residual ? ", residual" : "") +
                   (c.dx_aliases_dy ? ", dx aliasing dy" : ""));
      const int64_t n = s.rows * s.dim;
      const auto x = random_floats(n, 6), w = random_floats(s.dim, 7), dy = random_floats(n, 8),
                 residual = random_floats(n, 9), dweight_initial = random_floats(s.dim, 10);
      std::vector<float> y(x.size()), rstd(static_cast<size_t>(s.rows));
      rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), s.rows, s.dim, kEps);
      std::vector<float> dx(x.size()), dweight = dweight_initial;
      const float* cpu_residual = c.residual ? residual.data() : nullptr;
      rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dweight.data(),
                       s.rows, s.dim, cpu_residual);
      ASSERT_GT(relative_error(dx, dy), 0.1);
      ASSERT_GT(relative_error(dweight, dweight_initial), 0.1);

      auto d_x = upload(x), d_w = upload(w), d_dy = upload(dy), d_rstd = upload(rstd);
      auto d_residual = upload(residual), d_dweight = upload(dweight_initial);
      auto d_dx_own = empty<float>(n);
      auto& d_dx = c.dx_aliases_dy ? d_dy : d_dx_own;
      const int64_t workspace_floats = cuda::rmsnorm_backward_workspace_floats(s.rows, s.dim);
      auto d_workspace =
          upload(std::vector<float>(static_cast<size_t>(workspace_floats), std::nanf("")));
      cuda::rmsnorm_backward(d_dy.data(), d_x.data(), d_w.data(), d_rstd.data(), d_dx.data(),
                             d_dweight.data(), s.rows, s.dim,
                             c.residual ? d_residual.data() : nullptr, d_workspace.data(),
                             stream());
      EXPECT_LE(relative_error(download(d_dx), dx), kTolerance);
      EXPECT_LE(relative_error(download(d_dweight), dweight), kTolerance);
    }
  }
}

// Same inputs, same bits: no atomics in dx or dweight.
TEST_F(CudaRmsNorm, BackwardIsDeterministic) {
  const int64_t rows = 4096, dim = 2048, n = rows * dim;
  const auto x = random_floats(n, 11), w = random_floats(dim, 12), dy = random_floats(n, 13),
             dweight_initial = random_floats(dim, 14);
  std::vector<float> y(x.size()), rstd(static_cast<size_t>(rows));
  rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim, kEps);
  auto d_x = upload(x), d_w = upload(w), d_dy = upload(dy), d_rstd = upload(rstd);
  auto d_workspace = empty<float>(cuda::rmsnorm_backward_workspace_floats(rows, dim));
  std::vector<std::vector<float>> dx_runs, dweight_runs;
  for (int run = 0; run < 2; ++run) {
    auto d_dweight = upload(dweight_initial);
    auto d_dx = empty<float>(n);
    cuda::rmsnorm_backward(d_dy.data(), d_x.data(), d_w.data(), d_rstd.data(), d_dx.data(),
                           d_dweight.data(), rows, dim, nullptr, d_workspace.data(), stream());
    dx_runs.push_back(download(d_dx));
    dweight_runs.push_back(download(d_dweight));
  }
  EXPECT_EQ(first_bit_difference(dx_runs[1], dx_runs[0]), -1);
  EXPECT_EQ(first_bit_difference(dweight_runs[1], dweight_runs[0]), -1);
  EXPECT_GT(relative_error(dweight_runs[0], dweight_initial), 0.1);
}

TEST_F(CudaRmsNorm, EmptyInputsLaunchNothing) {
  EXPECT_NO_THROW(cuda::rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, 0, 64, kEps,
                                        stream()));
  EXPECT_NO_THROW(cuda::residual_rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                                 nullptr, 0, 64, kEps, stream()));
  EXPECT_NO_THROW(cuda::rmsnorm_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                         0, 64, nullptr, nullptr, stream()));
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
