// RoPE: position 0 is the identity, every pair keeps its norm, the rotation angle is
// p·theta^(-2i/D), in-place use works, and the backward matches finite differences.
#include "kernels/rope.h"

#include <cmath>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

constexpr int64_t kBatch = 2, kSeq = 5, kHeads = 3, kHeadDim = 8;
constexpr double kTheta = 10000.0;
constexpr size_t kSize = size_t(kBatch * kSeq * kHeads * kHeadDim);

size_t index(int64_t b, int64_t p, int64_t h, int64_t d) {
  return size_t(((b * kSeq + p) * kHeads + h) * kHeadDim + d);
}

TEST(Rope, PositionZeroIsIdentityAndPairNormsArePreserved) {
  const auto x = random_vector(kSize, 1);
  std::vector<double> y(kSize);
  rope_forward(x.data(), y.data(), kBatch, kSeq, kHeads, kHeadDim, kTheta);
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t p = 0; p < kSeq; ++p)
      for (int64_t h = 0; h < kHeads; ++h)
        for (int64_t d = 0; d < kHeadDim; d += 2) {
          const size_t i = index(b, p, h, d);
          if (p == 0) {
            EXPECT_EQ(y[i], x[i]);
            EXPECT_EQ(y[i + 1], x[i + 1]);
          }
          // Rotations are orthogonal: only double round-off may change the norm.
          EXPECT_NEAR(std::hypot(y[i], y[i + 1]), std::hypot(x[i], x[i + 1]), 1e-13);
        }
}

TEST(Rope, RotatesByTheDocumentedAngle) {
  // A unit vector (1, 0) in pair i at position p must become (cos a, sin a),
  // a = p · theta^(-2i/D).
  std::vector<double> x(kSize, 0.0), y(kSize);
  const int64_t p = 3, i = 2;
  x[index(1, p, 2, 2 * i)] = 1.0;
  rope_forward(x.data(), y.data(), kBatch, kSeq, kHeads, kHeadDim, kTheta);
  const double angle = double(p) * std::pow(kTheta, -2.0 * double(i) / double(kHeadDim));
  EXPECT_NEAR(y[index(1, p, 2, 2 * i)], std::cos(angle), 1e-15);
  EXPECT_NEAR(y[index(1, p, 2, 2 * i + 1)], std::sin(angle), 1e-15);
}

TEST(Rope, InPlaceMatchesOutOfPlace) {
  const auto x = testing::to_float(random_vector(kSize, 2));
  std::vector<float> y(kSize), inplace = x;
  rope_forward(x.data(), y.data(), kBatch, kSeq, kHeads, kHeadDim, 10000.0f);
  rope_forward(inplace.data(), inplace.data(), kBatch, kSeq, kHeads, kHeadDim, 10000.0f);
  testing::expect_bitwise_equal("in place", y, inplace);
  rope_backward(inplace.data(), inplace.data(), kBatch, kSeq, kHeads, kHeadDim, 10000.0f);
  // Backward of forward is the identity up to float round-off (a few ulps of |x| ~ 1).
  for (size_t i = 0; i < kSize; ++i) EXPECT_NEAR(inplace[i], x[i], 1e-6);
}

TEST(Rope, GradientMatchesFiniteDifferences) {
  auto x = random_vector(kSize, 3);
  const auto R = random_vector(kSize, 4);
  auto loss = [&] {
    std::vector<double> y(kSize);
    rope_forward(x.data(), y.data(), kBatch, kSeq, kHeads, kHeadDim, kTheta);
    return testing::dot(y, R);
  };
  std::vector<double> dx(kSize, 5.0);
  rope_backward(R.data(), dx.data(), kBatch, kSeq, kHeads, kHeadDim, kTheta);
  testing::expect_gradient_matches("dx", x, dx, loss);
}

}  // namespace
}  // namespace baleine::kernels
