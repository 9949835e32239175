#include "kernels/fp8.h"

#include <array>
#include <cmath>
#include <cstring>

namespace baleine::kernels {

namespace {

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

float float_of(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// cuda_fp8.h decodes every NaN code, whatever its sign, to the half NaN 0x7FFF, i.e. the float
// 0x7FFFFFFF once widened by __half2float.
const float kCanonicalNan = float_of(0x7FFFFFFFu);

struct FormatBits {
  int mantissa_bits;  // stored mantissa bits
  int bias;
  uint8_t max_code;   // the largest finite magnitude's code
};

constexpr FormatBits format_bits(Fp8Format f) {
  return f == Fp8Format::kE4M3 ? FormatBits{3, 7, 0x7E} : FormatBits{2, 15, 0x7B};
}

// The magnitude of an FP8 code (sign bit clear), by the format's definition.
float decode_magnitude(uint8_t code, Fp8Format f) {
  const FormatBits fb = format_bits(f);
  const int exponent = code >> fb.mantissa_bits;
  const int mantissa = code & ((1 << fb.mantissa_bits) - 1);
  if (f == Fp8Format::kE4M3 && code == 0x7F) return kCanonicalNan;
  if (f == Fp8Format::kE5M2 && exponent == 0x1F) {
    return mantissa == 0 ? INFINITY : kCanonicalNan;
  }
  const int min_exponent = 1 - fb.bias;
  if (exponent == 0) {  // subnormal: mantissa · 2^(min_exponent − mantissa_bits)
    return std::ldexp(static_cast<float>(mantissa), min_exponent - fb.mantissa_bits);
  }
  const float significand = 1.0f + std::ldexp(static_cast<float>(mantissa), -fb.mantissa_bits);
  return std::ldexp(significand, exponent - fb.bias);
}

using DecodeTable = std::array<float, 256>;

DecodeTable make_table(Fp8Format f) {
  DecodeTable t{};
  for (int c = 0; c < 256; ++c) {
    const float m = decode_magnitude(static_cast<uint8_t>(c & 0x7F), f);
    t[c] = (c & 0x80) && !std::isnan(m) ? -m : m;
  }
  return t;
}

const DecodeTable& table(Fp8Format f) {
  static const DecodeTable e4m3 = make_table(Fp8Format::kE4M3);
  static const DecodeTable e5m2 = make_table(Fp8Format::kE5M2);
  return f == Fp8Format::kE4M3 ? e4m3 : e5m2;
}

}  // namespace

const char* fp8_format_name(Fp8Format format) {
  return format == Fp8Format::kE4M3 ? "e4m3" : "e5m2";
}

float fp8_max(Fp8Format format) { return format == Fp8Format::kE4M3 ? 448.0f : 57344.0f; }

uint8_t fp8_encode(float x, Fp8Format format) {
  const FormatBits fb = format_bits(format);
  const uint32_t u = bits_of(x);
  const uint32_t magnitude = u & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return 0x7F;  // NaN (cuda_fp8.h canonicalises the sign away)
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80);
  const int exponent = static_cast<int>(magnitude >> 23) - 127;
  const int min_exponent = 1 - fb.bias;
  uint32_t code;
  if (exponent < min_exponent) {
    // FP8 subnormal range (float subnormals and zero included): count quanta of
    // 2^(min_exponent − mantissa_bits). The scaling is exact and nearbyint rounds half to even;
    // 2^mantissa_bits quanta is the smallest normal, whose code is that same number.
    const float quanta = std::ldexp(std::fabs(x), fb.mantissa_bits - min_exponent);
    code = static_cast<uint32_t>(std::nearbyint(quanta));
  } else {
    // Normal: round the float's mantissa to mantissa_bits, half to even (a carry into the
    // exponent is the correct result), then re-bias the exponent.
    const int dropped = 23 - fb.mantissa_bits;
    const uint32_t half = (1u << (dropped - 1)) - 1u + ((magnitude >> dropped) & 1u);
    const uint32_t rounded = (magnitude + half) >> dropped;
    const uint32_t rebias = static_cast<uint32_t>(127 - fb.bias) << fb.mantissa_bits;
    code = rounded - rebias;
    if (exponent > 15 || code > fb.max_code) code = fb.max_code;  // saturate (SATFINITE)
  }
  return static_cast<uint8_t>(code | sign);
}

float fp8_decode(uint8_t code, Fp8Format format) { return table(format)[code]; }

void fp8_encode_scaled(const float* x, float inv_scale, uint8_t* out, int64_t n,
                       Fp8Format format) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp8_encode(x[i] * inv_scale, format);
}

uint16_t bf16_encode(float x) {
  const uint32_t u = bits_of(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
  const uint32_t half = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + half) >> 16);
}

}  // namespace baleine::kernels
