#pragma once
// exp() that the compiler can vectorise. glibc's expf is a scalar call unless -ffast-math
// exposes libmvec's SIMD variants, and -ffast-math is off for this project (NaNs and infinities
// must survive the kernels). This one is branch-free plain C++: inside an `omp simd` loop GCC
// turns it into AVX-512 / AVX2 code.
//
// Method (Cody & Waite range reduction, as in Cephes' expf by S. Moshier): x = n·ln2 + r with
// n = round(x / ln2) and |r| <= ln2/2, ln2 split in two parts so r is exact; e^r from a degree-6
// polynomial (Cephes' expf coefficients); 2^n put straight into the exponent bits. Relative
// error about 1-2 ulp (tests/kernels/vector_exp_test.cpp measures it against double exp).
// Edges: x > 88.72 gives +inf, x < -87.33 gives 0 (no subnormal results; they are below FP32's
// normal range and every caller here adds them to something or takes a ratio), NaN stays NaN.
//
// Double keeps std::exp: the double instantiations are the reference the float path is tested
// against, and speed does not matter there.
#include <cmath>
#include <cstdint>
#include <cstring>

namespace baleine::kernels {

inline float vector_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // ln 2's leading bits, so n·kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kMaxInput = 88.7228391f;   // ln(FLT_MAX)
  constexpr float kMinInput = -87.3365447f;  // ln(FLT_MIN): below it, flush to 0
  const float clamped = x > kMaxInput ? kMaxInput : (x < kMinInput ? kMinInput : x);
  const float n = std::nearbyint(clamped * kLog2e);
  const float r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;
  // 2^n through the exponent field. After the clamp n lies in [-126, 128], and 2^128 has no
  // exponent code, so 2^n is applied as 2^(n/2) · 2^(n - n/2): both factors are normal.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni / 2;
  const int32_t bits_a = (half + 127) << 23, bits_b = (ni - half + 127) << 23;
  float scale_a, scale_b;
  std::memcpy(&scale_a, &bits_a, sizeof scale_a);
  std::memcpy(&scale_b, &bits_b, sizeof scale_b);
  float result = e_r * scale_a * scale_b;
  result = x > kMaxInput ? INFINITY : result;
  result = x < kMinInput ? 0.0f : result;
  return x != x ? x : result;  // NaN in, NaN out (every comparison above was false)
}

inline double vector_exp(double x) { return std::exp(x); }

}  // namespace baleine::kernels
