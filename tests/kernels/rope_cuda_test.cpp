// The CUDA rotary position embedding (kernels/cuda/rope.h) against kernels::rope_*<float>:
//   - the angle table against the CPU's computation (double pow, cos, sin, rounded to float):
//     at most 1 ulp anywhere and almost always the same bits;
//   - forward and backward on 2 × 37 × 3 heads × 10, one pair per row (head_dim 2), and the
//     realistic 2 × 2048 × 16 heads × 64 (4096 tokens × 1024), in place and out of place;
//   - a table built for more positions than the call uses, unaligned pointers (the scalar
//     path), backward after forward giving back the input, odd head_dim refused.
// Skips without the CUDA backend (and the GPU tests without a GPU), as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaRope, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/rope.h"
#include "kernels/rope.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;
using cuda::testing::relative_error;

class CudaRope : public cuda::testing::GpuTest {
 protected:
  cuda::DeviceBuffer<float> table(int64_t seq, int64_t head_dim, float theta) {
    auto t = empty<float>(cuda::rope_table_floats(seq, head_dim));
    cuda::rope_build_table(t.data(), seq, head_dim, theta, stream());
    return t;
  }
};

// Elementwise FP32: each output is c·x0 ∓ s·x1 with the same (c, s) as the CPU (the table
// test below), rounded two or three times and possibly fused differently: a few ulps, ~1e-7
// relative over a tensor; 1e-6 (cuda_test_support.h) still catches a wrong angle or sign.
constexpr double kTolerance = 1e-6;
constexpr float kTheta = 10000.0f;

struct Shape {
  int64_t batch, seq, heads, head_dim;
  int64_t size() const { return batch * seq * heads * head_dim; }
};
std::string describe(const Shape& s) {
  return std::to_string(s.batch) + " × " + std::to_string(s.seq) + " × " +
         std::to_string(s.heads) + " × " + std::to_string(s.head_dim);
}
const std::vector<Shape> kShapes = {{2, 37, 3, 10}, {3, 37, 1, 2}, {2, 2048, 16, 64}};

// Distance in units in the last place between two finite floats (through the ordered integer
// image of the float line, so it also works across zero).
int64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

// The CPU's table (kernels/cpu/rope.cpp builds it this way), interleaved as the GPU's.
std::vector<float> cpu_table(int64_t seq, int64_t head_dim, float theta) {
  const int64_t half = head_dim / 2;
  std::vector<float> t(static_cast<size_t>(seq * head_dim));
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(double(theta), -2.0 * double(i) / double(head_dim));
    for (int64_t p = 0; p < seq; ++p) {
      const double angle = double(p) * inv_freq;
      t[size_t(2 * (p * half + i))] = float(std::cos(angle));
      t[size_t(2 * (p * half + i) + 1)] = float(std::sin(angle));
    }
  }
  return t;
}

TEST(CudaRopeArguments, OddHeadDimIsRefused) {
  EXPECT_THROW(cuda::rope_table_floats(16, 7), std::invalid_argument);
  EXPECT_THROW(cuda::rope_forward(nullptr, nullptr, nullptr, 1, 16, 2, 7, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda::rope_backward(nullptr, nullptr, nullptr, 1, 16, 2, 7, nullptr),
               std::invalid_argument);
  EXPECT_EQ(cuda::rope_table_floats(16, 8), 16 * 8);
}

// CUDA's double pow/sin/cos are within 2 ulp of double; rounded to float they differ from
// glibc's only where the exact value lies within a few double ulps of a float rounding
// boundary (~1e-8 of values): 1 float ulp at most, and almost never.
TEST_F(CudaRope, TableHoldsTheCpusAngles) {
  for (const auto& [seq, head_dim, theta] :
       {std::tuple<int64_t, int64_t, float>{4096, 128, kTheta}, {37, 10, 1e6f}}) {
    SCOPED_TRACE(std::to_string(seq) + " positions, head_dim " + std::to_string(head_dim));
    const auto want = cpu_table(seq, head_dim, theta);
    const auto got = download(table(seq, head_dim, theta));
    ASSERT_EQ(got.size(), want.size());
    int64_t differing = 0, worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const int64_t d = ulp_distance(got[i], want[i]);
      differing += d != 0;
      worst = d > worst ? d : worst;
    }
    EXPECT_LE(worst, 1);
    EXPECT_LE(differing, static_cast<int64_t>(got.size()) / 10000);
  }
}

TEST_F(CudaRope, ForwardAndBackwardMatchTheCpu) {
  for (const Shape& s : kShapes) {
    for (const bool in_place : {false, true}) {
      SCOPED_TRACE(describe(s) + (in_place ? ", in place" : ""));
      const auto x = random_floats(s.size(), 1), dy = random_floats(s.size(), 2);
      std::vector<float> y(x.size()), dx(x.size());
      rope_forward(x.data(), y.data(), s.batch, s.seq, s.heads, s.head_dim, kTheta);
      rope_backward(dy.data(), dx.data(), s.batch, s.seq, s.heads, s.head_dim, kTheta);
      ASSERT_GT(relative_error(y, x), 0.1);  // the references rotate
      ASSERT_GT(relative_error(dx, dy), 0.1);

      auto angles = table(s.seq, s.head_dim, kTheta);
      auto d_x = upload(x), d_dy = upload(dy);
      auto d_y_own = empty<float>(s.size()), d_dx_own = empty<float>(s.size());
      auto& d_y = in_place ? d_x : d_y_own;
      auto& d_dx = in_place ? d_dy : d_dx_own;
      cuda::rope_forward(d_x.data(), d_y.data(), angles.data(), s.batch, s.seq, s.heads,
                         s.head_dim, stream());
      cuda::rope_backward(d_dy.data(), d_dx.data(), angles.data(), s.batch, s.seq, s.heads,
                          s.head_dim, stream());
      EXPECT_LE(relative_error(download(d_y), y), kTolerance);
      EXPECT_LE(relative_error(download(d_dx), dx), kTolerance);
    }
  }
}

// The rotation is orthogonal: backward(forward(x)) = x up to rounding.
TEST_F(CudaRope, BackwardUndoesForward) {
  const Shape s{2, 37, 3, 10};
  const auto x = random_floats(s.size(), 3);
  auto angles = table(s.seq, s.head_dim, kTheta);
  auto d_x = upload(x);
  cuda::rope_forward(d_x.data(), d_x.data(), angles.data(), s.batch, s.seq, s.heads, s.head_dim,
                     stream());
  ASSERT_GT(relative_error(download(d_x), x), 0.1);
  cuda::rope_backward(d_x.data(), d_x.data(), angles.data(), s.batch, s.seq, s.heads, s.head_dim,
                      stream());
  EXPECT_LE(relative_error(download(d_x), x), kTolerance);
}

// A table built once for the longest sequence serves shorter ones (positions are its rows).
TEST_F(CudaRope, ATableForMorePositionsServesShorterSequences) {
  const Shape s{2, 37, 3, 10};
  const auto x = random_floats(s.size(), 4);
  std::vector<float> y(x.size());
  rope_forward(x.data(), y.data(), s.batch, s.seq, s.heads, s.head_dim, kTheta);
  auto angles = table(64, s.head_dim, kTheta);
  auto d_x = upload(x);
  auto d_y = empty<float>(s.size());
  cuda::rope_forward(d_x.data(), d_y.data(), angles.data(), s.batch, s.seq, s.heads, s.head_dim,
                     stream());
  EXPECT_LE(relative_error(download(d_y), y), kTolerance);
}

// One float off 8-byte alignment: pairs are read as two floats; the float before stays.
TEST_F(CudaRope, UnalignedPointers) {
  const Shape s{2, 37, 3, 10};
  const auto x = random_floats(s.size() + 1, 5);
  std::vector<float> y = random_floats(s.size() + 1, 6);
  const std::vector<float> y_initial = y;
  rope_forward(x.data() + 1, y.data() + 1, s.batch, s.seq, s.heads, s.head_dim, kTheta);
  auto angles = table(s.seq, s.head_dim, kTheta);
  auto d_x = upload(x), d_y = upload(y_initial);
  cuda::rope_forward(d_x.data() + 1, d_y.data() + 1, angles.data(), s.batch, s.seq, s.heads,
                     s.head_dim, stream());
  const auto got = download(d_y);
  EXPECT_EQ(got[0], y_initial[0]);
  EXPECT_LE(relative_error(got, y), kTolerance);
}

TEST_F(CudaRope, EmptyInputsLaunchNothing) {
  EXPECT_NO_THROW(cuda::rope_build_table(nullptr, 0, 64, kTheta, stream()));
  EXPECT_NO_THROW(cuda::rope_forward(nullptr, nullptr, nullptr, 0, 16, 2, 64, stream()));
  EXPECT_NO_THROW(cuda::rope_backward(nullptr, nullptr, nullptr, 2, 16, 0, 64, stream()));
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
