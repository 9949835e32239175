// SwiGLU: forward against the formula (large |a| included), both gradients by finite
// differences.
#include "kernels/swiglu.h"

#include <cmath>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

TEST(SwiGlu, ForwardMatchesDefinitionAndStaysFinite) {
  std::vector<double> a = random_vector(20, 1, 2.0), b = random_vector(20, 2);
  a[0] = -800.0;  // e^800 overflows: silu must still be 0, not NaN
  a[1] = 800.0;
  std::vector<double> h(a.size());
  swiglu_forward(a.data(), b.data(), h.data(), int64_t(a.size()));
  for (size_t i = 0; i < a.size(); ++i) {
    const double expected = a[i] / (1 + std::exp(-a[i])) * b[i];
    EXPECT_NEAR(h[i], expected, 1e-13 * std::max(1.0, std::abs(expected)));
  }
  std::vector<float> af = {-200.0f, 200.0f}, bf = {1.0f, 1.0f}, hf(2), daf(2), dbf(2);
  swiglu_forward(af.data(), bf.data(), hf.data(), 2);
  swiglu_backward(bf.data(), af.data(), bf.data(), daf.data(), dbf.data(), 2);
  for (float x : {hf[0], hf[1], daf[0], daf[1], dbf[0], dbf[1]}) EXPECT_TRUE(std::isfinite(x));
}

TEST(SwiGlu, GradientsMatchFiniteDifferences) {
  const size_t n = 31;
  auto a = random_vector(n, 3, 2.0), b = random_vector(n, 4);
  const auto R = random_vector(n, 5);
  auto loss = [&] {
    std::vector<double> h(n);
    swiglu_forward(a.data(), b.data(), h.data(), int64_t(n));
    return testing::dot(h, R);
  };
  std::vector<double> da(n, 9.0), db(n, 9.0);
  swiglu_backward(R.data(), a.data(), b.data(), da.data(), db.data(), int64_t(n));
  testing::expect_gradient_matches("da", a, da, loss);
  testing::expect_gradient_matches("db", b, db, loss);

  // In place (da aliasing dh) gives the same bits.
  auto inplace = R;
  std::vector<double> db2(n);
  swiglu_backward(inplace.data(), a.data(), b.data(), inplace.data(), db2.data(), int64_t(n));
  testing::expect_bitwise_equal("da in place", inplace, da);
  testing::expect_bitwise_equal("db in place", db2, db);
}

}  // namespace
}  // namespace baleine::kernels
