// RMSNorm: forward against the formula, every gradient by finite differences, dweight
// accumulation, bit-identical dweight for 1 and 2 threads, and the fused residual forms
// against their unfused two-pass equivalents.
#include "kernels/rmsnorm.h"

#include <omp.h>

#include <cmath>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

TEST(RmsNorm, ForwardMatchesDefinition) {
  const int64_t rows = 3, dim = 10;
  const double eps = 1e-5;
  const auto x = random_vector(size_t(rows * dim), 1), w = random_vector(size_t(dim), 2);
  std::vector<double> y(x.size()), rstd(static_cast<size_t>(rows));
  rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim, eps);
  for (int64_t r = 0; r < rows; ++r) {
    double mean_sq = 0;
    for (int64_t c = 0; c < dim; ++c) mean_sq += x[size_t(r * dim + c)] * x[size_t(r * dim + c)];
    mean_sq /= double(dim);
    const double inv = 1 / std::sqrt(mean_sq + eps);
    EXPECT_NEAR(rstd[size_t(r)], inv, 1e-14);  // double round-off only
    for (int64_t c = 0; c < dim; ++c)
      EXPECT_NEAR(y[size_t(r * dim + c)], x[size_t(r * dim + c)] * inv * w[size_t(c)], 1e-14);
  }
}

TEST(RmsNorm, GradientsMatchFiniteDifferences) {
  const int64_t rows = 4, dim = 9;
  const double eps = 1e-5;
  auto x = random_vector(size_t(rows * dim), 3), w = random_vector(size_t(dim), 4);
  const auto R = random_vector(x.size(), 5);
  auto loss = [&] {
    std::vector<double> y(x.size()), rstd(static_cast<size_t>(rows));
    rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim, eps);
    return testing::dot(y, R);
  };
  std::vector<double> y(x.size()), rstd(static_cast<size_t>(rows));
  rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim, eps);
  std::vector<double> dx(x.size(), 77.0), dw(size_t(dim), 0.0);
  rmsnorm_backward(R.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, dim);
  testing::expect_gradient_matches("dx", x, dx, loss);
  testing::expect_gradient_matches("dweight", w, dw, loss);

  // Parameter gradients accumulate: a second backward adds the same amount again.
  auto dw2 = dw;
  rmsnorm_backward(R.data(), x.data(), w.data(), rstd.data(), dx.data(), dw2.data(), rows, dim);
  for (size_t i = 0; i < dw.size(); ++i) EXPECT_NEAR(dw2[i], 2 * dw[i], 1e-12);

  // In place (dx aliasing dy) gives the same bits.
  auto inplace = R;
  std::vector<double> dw3(size_t(dim), 0.0);
  rmsnorm_backward(inplace.data(), x.data(), w.data(), rstd.data(), inplace.data(), dw3.data(),
                   rows, dim);
  testing::expect_bitwise_equal("dx in place", inplace, dx);
  testing::expect_bitwise_equal("dweight in place", dw3, dw);
}

TEST(RmsNorm, DweightBitIdenticalForOneAndTwoThreads) {
  const int64_t rows = 512, dim = 200;  // big enough to take the parallel path
  const auto x = testing::to_float(random_vector(size_t(rows * dim), 6));
  const auto w = testing::to_float(random_vector(size_t(dim), 7));
  const auto dy = testing::to_float(random_vector(size_t(rows * dim), 8));
  std::vector<float> y(x.size()), rstd(static_cast<size_t>(rows));
  rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim, 1e-5f);
  const int saved = omp_get_max_threads();
  std::vector<float> dx1(x.size()), dx2(x.size()), dw1(size_t(dim), 0.5f), dw2(size_t(dim), 0.5f);
  omp_set_num_threads(1);
  rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx1.data(), dw1.data(), rows, dim);
  omp_set_num_threads(2);
  rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx2.data(), dw2.data(), rows, dim);
  omp_set_num_threads(saved);
  testing::expect_bitwise_equal("dweight", dw1, dw2);
  testing::expect_bitwise_equal("dx", dx1, dx2);
}

// residual_rmsnorm_forward is the sum followed by rmsnorm_forward, to the bit, in place too.
TEST(RmsNorm, ResidualForwardIsAddThenNorm) {
  const int64_t rows = 300, dim = 96;  // parallel path
  const auto x = testing::to_float(random_vector(size_t(rows * dim), 11));
  const auto branch = testing::to_float(random_vector(size_t(rows * dim), 12));
  const auto w = testing::to_float(random_vector(size_t(dim), 13));
  std::vector<float> h_ref(x.size()), y_ref(x.size()), rstd_ref(static_cast<size_t>(rows));
  for (size_t i = 0; i < x.size(); ++i) h_ref[i] = x[i] + branch[i];
  rmsnorm_forward(h_ref.data(), w.data(), y_ref.data(), rstd_ref.data(), rows, dim, 1e-6f);

  std::vector<float> h(x.size(), 5.0f), y(x.size(), 5.0f), rstd(size_t(rows), 5.0f);
  residual_rmsnorm_forward(x.data(), branch.data(), h.data(), w.data(), y.data(), rstd.data(),
                           rows, dim, 1e-6f);
  testing::expect_bitwise_equal("h", h, h_ref);
  testing::expect_bitwise_equal("y", y, y_ref);
  testing::expect_bitwise_equal("rstd", rstd, rstd_ref);

  auto in_place = x;  // h aliasing x
  residual_rmsnorm_forward(in_place.data(), branch.data(), in_place.data(), w.data(), y.data(),
                           rstd.data(), rows, dim, 1e-6f);
  testing::expect_bitwise_equal("h in place", in_place, h_ref);
}

// With a residual, dx is the plain input gradient plus the residual, to the bit; dweight is
// unchanged by it.
TEST(RmsNorm, BackwardAddsTheResidualGradient) {
  const int64_t rows = 64, dim = 200;
  const auto x = testing::to_float(random_vector(size_t(rows * dim), 14));
  const auto w = testing::to_float(random_vector(size_t(dim), 15));
  const auto dy = testing::to_float(random_vector(size_t(rows * dim), 16));
  const auto residual = testing::to_float(random_vector(size_t(rows * dim), 17));
  std::vector<float> y(x.size()), rstd(static_cast<size_t>(rows));
  rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, dim, 1e-6f);
  std::vector<float> dx(x.size()), dx_res(x.size(), 9.0f), dw(size_t(dim), 0.25f),
      dw_res(size_t(dim), 0.25f);
  rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, dim);
  rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx_res.data(), dw_res.data(), rows,
                   dim, residual.data());
  for (size_t i = 0; i < dx.size(); ++i) dx[i] += residual[i];
  testing::expect_bitwise_equal("dx + residual", dx_res, dx);
  testing::expect_bitwise_equal("dweight", dw_res, dw);
}

}  // namespace
}  // namespace baleine::kernels
