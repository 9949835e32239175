#include "kernels/fp8.h"

#include <array>
#include <cmath>

#include "kernels/cpu/fp8_encode_inline.h"

namespace baleine::kernels {

namespace {

// cuda_fp8.h decodes every NaN code, whatever its sign, to the half NaN 0x7FFF, i.e. the float
// 0x7FFFFFFF once widened by __half2float.
const float kCanonicalNan = detail::float_of(0x7FFFFFFFu);

struct FormatBits {
  int mantissa_bits;  // stored mantissa bits
  int bias;
};

constexpr FormatBits format_bits(Fp8Format f) {
  return f == Fp8Format::kE4M3 ? FormatBits{3, 7} : FormatBits{2, 15};
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
  return format == Fp8Format::kE4M3 ? detail::encode<Fp8Format::kE4M3>(x)
                                    : detail::encode<Fp8Format::kE5M2>(x);
}

float fp8_decode(uint8_t code, Fp8Format format) { return table(format)[code]; }

void fp8_encode_scaled(const float* x, float inv_scale, uint8_t* out, int64_t n,
                       Fp8Format format) {
  if (format == Fp8Format::kE4M3) {
    for (int64_t i = 0; i < n; ++i) out[i] = detail::encode<Fp8Format::kE4M3>(x[i] * inv_scale);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = detail::encode<Fp8Format::kE5M2>(x[i] * inv_scale);
  }
}

}  // namespace baleine::kernels
