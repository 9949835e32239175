#pragma once
// The FP8 encoder as an inline, branch-free function, shared by the codec (fp8.cpp) and the
// quantizers (fp8_quantize.cpp): written without branches or library calls so that encode
// loops vectorize. Bit-identical to cuda_fp8.h's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, F)
// (tests/kernels/fp8_codec_test.cpp; checked on all 2^32 floats once).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/fp8.h"

namespace baleine::kernels::detail {

inline uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

template <Fp8Format F>
struct Fp8Layout;
template <>
struct Fp8Layout<Fp8Format::kE4M3> {
  static constexpr int kMantissaBits = 3, kBias = 7;
  static constexpr uint32_t kMaxCode = 0x7E;
};
template <>
struct Fp8Layout<Fp8Format::kE5M2> {
  static constexpr int kMantissaBits = 2, kBias = 15;
  static constexpr uint32_t kMaxCode = 0x7B;
};

// fp8_encode(y, F).
template <Fp8Format F>
inline uint8_t encode(float y) {
  using L = Fp8Layout<F>;
  constexpr int kDropped = 23 - L::kMantissaBits;  // float mantissa bits that FP8 lacks
  constexpr uint32_t kMinNormalBits = uint32_t(127 + 1 - L::kBias) << 23;
  // FP8 subnormals are multiples of the quantum 2^(1 − bias − mantissa_bits). |y| / quantum is
  // exact (a power-of-two product, y is below the smallest normal), and adding 2^23 rounds it
  // to an integer, half to even, in the float adder; the integer left is the code (the count
  // 2^mantissa_bits, the smallest normal, has that same code).
  constexpr float kPerQuantum = float(1u << (L::kBias - 1 + L::kMantissaBits));
  constexpr float kTwo23 = 8388608.0f;
  const uint32_t u = bits_of(y);
  const uint32_t magnitude = u & 0x7FFFFFFFu;
  const uint32_t subnormal =
      bits_of(float_of(magnitude) * kPerQuantum + kTwo23) - bits_of(kTwo23);
  // Normal: round the mantissa half to even (a carry into the exponent is the right result),
  // re-bias the exponent, saturate (SATFINITE) everything beyond the largest finite code.
  const uint32_t rounded =
      (magnitude + ((1u << (kDropped - 1)) - 1u) + ((magnitude >> kDropped) & 1u)) >> kDropped;
  const uint32_t normal =
      std::min<uint32_t>(rounded - (uint32_t(127 - L::kBias) << L::kMantissaBits), L::kMaxCode);
  const uint32_t code = (magnitude < kMinNormalBits ? subnormal : normal) | ((u >> 24) & 0x80u);
  return static_cast<uint8_t>(magnitude > 0x7F800000u ? 0x7Fu : code);
}

}  // namespace baleine::kernels::detail
