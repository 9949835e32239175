// The CUDA AdamW and sum of squares (kernels/cuda/adamw.h) against the CPU kernels
// (kernels/adamw.h):
//   - adamw_update and adamw_update_bf16_moments over several steps (weight decay on, gradient
//     scale 0.7): bit for bit against the formula evaluated with every operation rounded as
//     written (what the GPU kernel computes), and within a tolerance against the CPU kernel,
//     which its -march=native build may compute with fused multiply-adds;
//   - non-finite gradients: NaN and inf moments encode to the same BF16 codes as on the CPU;
//   - sum_of_squares over several buffers of odd sizes: bit-identical to the CPU's double sums
//     added in the same order.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaAdamW, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/cuda/adamw.h"
#include "kernels/fp8.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::relative_error;

class CudaAdamW : public cuda::testing::GpuTest {};

// ---- the formula as written, every operation rounded on its own -------------------------------

// Storing to a volatile float forces the rounding: without it the compiler may fuse a product
// into the following sum (GCC does so by default in C++ when the target has FMA).
float rn(float x) {
  volatile float stored = x;
  return stored;
}

struct ReferenceCoefficients {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, inv_sqrt_bias2, decay, eps,
      grad_scale;
};

ReferenceCoefficients reference_coefficients(const AdamWStep& s) {
  const float bias1 = float(1.0 - std::pow(double(s.beta1), double(s.step)));
  const float bias2 = float(1.0 - std::pow(double(s.beta2), double(s.step)));
  return {s.beta1,          s.beta2,
          rn(1.0f - s.beta1), rn(1.0f - s.beta2),
          rn(s.lr / bias1), float(1.0 / std::sqrt(double(bias2))),
          rn(1.0f - rn(s.lr * s.weight_decay)), s.eps,
          s.grad_scale};
}

void reference_element(float& param, float grad, float& m, float& v,
                       const ReferenceCoefficients& c) {
  const float g = rn(grad * c.grad_scale);
  m = rn(rn(c.beta1 * m) + rn(c.one_minus_beta1 * g));
  v = rn(rn(c.beta2 * v) + rn(rn(c.one_minus_beta2 * g) * g));
  const float denom = rn(rn(std::sqrt(v) * c.inv_sqrt_bias2) + c.eps);
  param = rn(rn(param * c.decay) - rn(rn(c.step_size * m) / denom));
}

AdamWStep step_number(int64_t t) {
  AdamWStep step;
  step.lr = 1e-3f;
  step.weight_decay = 0.1f;
  step.step = t;
  step.grad_scale = 0.7f;  // as after clipping
  return step;
}

std::vector<float> squares(std::vector<float> x) {
  for (float& value : x) value *= value;
  return x;
}

std::vector<uint16_t> bf16_codes(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = bf16_encode(x[i]);
  return out;
}

std::vector<float> decoded(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_decode(bits[i]);
  return out;
}

constexpr int kSteps = 5;
constexpr int64_t kSizes[] = {1, 1000, 100003};

// Tolerances against the CPU kernel. Its build may fuse a·b + c (one rounding instead of two),
// so each step may differ by a few ulps per element: 1e-6 relative for FP32 values (measured
// ~1e-7 after 6 steps). A BF16 moment is stored rounded to 2^-9 relative, so a few-ulp FP32
// difference occasionally lands on the other side of a rounding boundary, and near cancellation
// in β1·m + (1−β1)·g that one BF16 step grows: 1e-3 bounds the norm of the decoded moments
// (measured ~3e-5). Against the written formula the GPU must agree bit for bit.
constexpr double kFp32Tolerance = 1e-6;
constexpr double kBf16MomentTolerance = 1e-3;

TEST_F(CudaAdamW, Fp32MomentsMatchTheFormulaExactlyAndTheCpuKernelClosely) {
  for (const int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    // Moments mid-training (v ≥ 0), not the zeros of step 0, so their update is exercised.
    std::vector<float> param = random_floats(n, 1), m = random_floats(n, 11),
                       v = squares(random_floats(n, 12));
    std::vector<float> exact_param = param, exact_m = m, exact_v = v;
    std::vector<float> cpu_param = param, cpu_m = m, cpu_v = v;
    auto d_param = upload(param), d_m = upload(m), d_v = upload(v);
    for (int t = 1; t <= kSteps; ++t) {
      const std::vector<float> grad = random_floats(n, 100 + t, 0.05f, 2.0f);
      const AdamWStep step = step_number(t);
      auto d_grad = upload(grad);
      cuda::adamw_update(d_param.data(), d_grad.data(), d_m.data(), d_v.data(), n, step,
                         stream());
      adamw_update(cpu_param.data(), grad.data(), cpu_m.data(), cpu_v.data(), n, step);
      const ReferenceCoefficients c = reference_coefficients(step);
      for (int64_t i = 0; i < n; ++i) {
        reference_element(exact_param[i], grad[i], exact_m[i], exact_v[i], c);
      }
    }
    const auto got_param = download(d_param), got_m = download(d_m), got_v = download(d_v);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got_param[i], exact_param[i]) << "param " << i;
      ASSERT_EQ(got_m[i], exact_m[i]) << "m " << i;
      ASSERT_EQ(got_v[i], exact_v[i]) << "v " << i;
    }
    EXPECT_LE(relative_error(got_param, cpu_param), kFp32Tolerance);
    EXPECT_LE(relative_error(got_m, cpu_m), kFp32Tolerance);
    EXPECT_LE(relative_error(got_v, cpu_v), kFp32Tolerance);
  }
}

TEST_F(CudaAdamW, Bf16MomentsMatchTheFormulaExactlyAndTheCpuKernelClosely) {
  for (const int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    std::vector<float> param = random_floats(n, 2);
    std::vector<uint16_t> m = bf16_codes(random_floats(n, 21)),
                          v = bf16_codes(squares(random_floats(n, 22)));
    std::vector<float> exact_param = param, cpu_param = param;
    std::vector<uint16_t> exact_m = m, exact_v = v, cpu_m = m, cpu_v = v;
    auto d_param = upload(param);
    auto d_m = upload(m), d_v = upload(v);
    for (int t = 1; t <= kSteps; ++t) {
      const std::vector<float> grad = random_floats(n, 200 + t, 0.05f, 2.0f);
      const AdamWStep step = step_number(t);
      auto d_grad = upload(grad);
      cuda::adamw_update_bf16_moments(d_param.data(), d_grad.data(), d_m.data(), d_v.data(), n,
                                      step, stream());
      adamw_update_bf16_moments(cpu_param.data(), grad.data(), cpu_m.data(), cpu_v.data(), n,
                                step);
      const ReferenceCoefficients c = reference_coefficients(step);
      for (int64_t i = 0; i < n; ++i) {
        float mi = bf16_decode(exact_m[i]), vi = bf16_decode(exact_v[i]);
        reference_element(exact_param[i], grad[i], mi, vi, c);
        exact_m[i] = bf16_encode(mi);
        exact_v[i] = bf16_encode(vi);
      }
    }
    const auto got_param = download(d_param);
    const auto got_m = download(d_m), got_v = download(d_v);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got_param[i], exact_param[i]) << "param " << i;
      ASSERT_EQ(got_m[i], exact_m[i]) << "m " << i;
      ASSERT_EQ(got_v[i], exact_v[i]) << "v " << i;
    }
    EXPECT_LE(relative_error(got_param, cpu_param), kFp32Tolerance);
    EXPECT_LE(relative_error(decoded(got_m), decoded(cpu_m)), kBf16MomentTolerance);
    EXPECT_LE(relative_error(decoded(got_v), decoded(cpu_v)), kBf16MomentTolerance);
  }
}

// NaN moments encode as 0x7FFF and infinite ones as ±inf, on both devices.
TEST_F(CudaAdamW, NonFiniteGradientsGiveTheCpuBf16Codes) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> grad = {std::nanf(""), inf, -inf, 0.5f, 3e38f};
  const int64_t n = static_cast<int64_t>(grad.size());
  std::vector<float> param = {1.0f, -1.0f, 0.5f, 0.25f, 2.0f};
  std::vector<uint16_t> m = {0x3F80, 0, 0xBF80, 0, 0}, v = {0x3F80, 0, 0x3F80, 0, 0};
  std::vector<float> cpu_param = param;
  std::vector<uint16_t> cpu_m = m, cpu_v = v;
  auto d_param = upload(param), d_grad = upload(grad);
  auto d_m = upload(m), d_v = upload(v);
  const AdamWStep step = step_number(3);
  cuda::adamw_update_bf16_moments(d_param.data(), d_grad.data(), d_m.data(), d_v.data(), n,
                                  step, stream());
  adamw_update_bf16_moments(cpu_param.data(), grad.data(), cpu_m.data(), cpu_v.data(), n, step);
  const auto got_m = download(d_m), got_v = download(d_v);
  const auto got_param = download(d_param);
  EXPECT_EQ(got_m[0], 0x7FFF);  // NaN
  EXPECT_EQ(got_v[0], 0x7FFF);
  EXPECT_EQ(got_v[1], 0x7F80);  // +inf: g² overflows
  EXPECT_EQ(got_v[4], 0x7F80);  // finite g whose square overflows
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(got_m[i], cpu_m[i]) << i;
    EXPECT_EQ(got_v[i], cpu_v[i]) << i;
    EXPECT_EQ(std::isnan(got_param[i]), std::isnan(cpu_param[i])) << i;
  }
}

TEST_F(CudaAdamW, EmptyUpdateEnqueuesNothing) {
  cuda::adamw_update(nullptr, nullptr, nullptr, nullptr, 0, step_number(1), stream());
  cuda::adamw_update_bf16_moments(nullptr, nullptr, nullptr, nullptr, 0, step_number(1),
                                  stream());
  auto total = upload(std::vector<double>{5.0});
  cuda::sum_of_squares_accumulate(nullptr, 0, total.data(), nullptr, stream());
  EXPECT_EQ(download(total)[0], 5.0);
  cuda::sum_of_squares(nullptr, 0, total.data(), nullptr, stream());
  EXPECT_EQ(download(total)[0], 0.0);
}

// ---- sum of squares ---------------------------------------------------------------------------

// Sizes around the CPU's 2^14-value chunks and its 8 lanes, so a different grouping (and thus
// a different rounding) would show; magnitudes spread over six decades make every regrouping
// change the last bits of the double sum.
TEST_F(CudaAdamW, SumOfSquaresOverManyBuffersIsBitIdenticalToTheCpu) {
  const int64_t sizes[] = {1, 7, 16383, 16384, 16385, 100003, (int64_t(1) << 20) + 5};
  int64_t workspace_doubles = 0;
  for (const int64_t n : sizes) {
    workspace_doubles = std::max(workspace_doubles, cuda::sum_of_squares_workspace_doubles(n));
  }
  EXPECT_EQ(cuda::sum_of_squares_workspace_doubles(16384), 1);
  EXPECT_EQ(cuda::sum_of_squares_workspace_doubles(16385), 2);
  auto workspace = empty<double>(workspace_doubles);
  auto total = upload(std::vector<double>{12345.0});  // overwritten by the first call

  double expected = 0;
  uint32_t seed = 7;
  for (size_t b = 0; b < std::size(sizes); ++b) {
    const int64_t n = sizes[b];
    std::vector<float> x = random_floats(n, seed++, 1e-3f, 1e3f);
    auto d_x = upload(x);
    const double cpu = sum_of_squares(x.data(), n);
    if (b == 0) {
      cuda::sum_of_squares(d_x.data(), n, total.data(), workspace.data(), stream());
      expected = cpu;
    } else {
      cuda::sum_of_squares_accumulate(d_x.data(), n, total.data(), workspace.data(), stream());
      expected += cpu;
    }
    // Each buffer alone, too: the overwrite form into a second total.
    auto alone = empty<double>(1);
    cuda::sum_of_squares(d_x.data(), n, alone.data(), workspace.data(), stream());
    EXPECT_EQ(download(alone)[0], cpu) << "n = " << n;
  }
  EXPECT_EQ(download(total)[0], expected);
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
