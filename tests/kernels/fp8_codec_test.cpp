// FP8 (E4M3, E5M2) and BF16 codecs.
// Always: golden values from the formats' definitions (Micikevicius et al. 2022, "FP8 Formats
// for Deep Learning", Table 1; BF16 = the top half of an IEEE binary32), every code's value
// from the definition, and encoding against a brute-force nearest-code search.
// With cuda_fp8.h (found at configure time): bit-exact agreement with CUDA's own host
// conversions on every code and on millions of inputs, which is what lets a tensor quantized
// on the CPU and one quantized on a GPU hold the same bytes.
#include "kernels/fp8.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#ifdef BALEINE_HAVE_CUDA_FP8_H
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#endif

namespace baleine::kernels {
namespace {

constexpr Fp8Format kE4M3 = Fp8Format::kE4M3;
constexpr Fp8Format kE5M2 = Fp8Format::kE5M2;

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

float pow2(int e) { return std::ldexp(1.0f, e); }

const float kInf = std::numeric_limits<float>::infinity();
const float kNan = std::numeric_limits<float>::quiet_NaN();

// Codes as printable hex, so a failure names them.
std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02X", v);
  return buf;
}

#define EXPECT_CODE(expected, actual) EXPECT_EQ(hex(expected), hex(actual))

// ---------------------------------------------------------------------------------------------
// Golden values

TEST(Fp8Codec, E4M3KnownValues) {
  EXPECT_EQ(fp8_max(kE4M3), 448.0f);
  EXPECT_STREQ(fp8_format_name(kE4M3), "e4m3");
  // Largest finite S.1111.110 = 1.75 · 2^8; 1.0 = 0.0111.000.
  EXPECT_CODE(0x7E, fp8_encode(448.0f, kE4M3));
  EXPECT_CODE(0xFE, fp8_encode(-448.0f, kE4M3));
  EXPECT_EQ(fp8_decode(0x7E, kE4M3), 448.0f);
  EXPECT_EQ(fp8_decode(0xFE, kE4M3), -448.0f);
  EXPECT_CODE(0x38, fp8_encode(1.0f, kE4M3));
  EXPECT_EQ(fp8_decode(0x39, kE4M3), 1.125f);
  // Smallest subnormal 2^-9, largest subnormal 7 · 2^-9, smallest normal 2^-6.
  EXPECT_EQ(fp8_decode(0x01, kE4M3), pow2(-9));
  EXPECT_CODE(0x01, fp8_encode(pow2(-9), kE4M3));
  EXPECT_EQ(fp8_decode(0x07, kE4M3), 7 * pow2(-9));
  EXPECT_EQ(fp8_decode(0x08, kE4M3), pow2(-6));
  EXPECT_CODE(0x08, fp8_encode(pow2(-6), kE4M3));
  // Ties go to the even code.
  EXPECT_CODE(0x38, fp8_encode(1.0625f, kE4M3));                    // 1 | 1.125
  EXPECT_CODE(0x39, fp8_encode(std::nextafter(1.0625f, 2.0f), kE4M3));
  EXPECT_CODE(0x3A, fp8_encode(1.1875f, kE4M3));                    // 1.125 | 1.25
  EXPECT_CODE(0x00, fp8_encode(pow2(-10), kE4M3));                  // 0 | 2^-9
  EXPECT_CODE(0x01, fp8_encode(std::nextafter(pow2(-10), 1.0f), kE4M3));
  EXPECT_CODE(0x02, fp8_encode(3 * pow2(-10), kE4M3));              // 2^-9 | 2^-8
  EXPECT_CODE(0x82, fp8_encode(-3 * pow2(-10), kE4M3));
  EXPECT_CODE(0x08, fp8_encode(7.5f * pow2(-9), kE4M3));            // subnormal | normal
  EXPECT_CODE(0x7E, fp8_encode(432.0f, kE4M3));                     // 416 | 448
  EXPECT_CODE(0x7D, fp8_encode(std::nextafter(432.0f, 0.0f), kE4M3));
  // Saturation: 480 would be 0x7F, which E4M3 spends on NaN; everything larger is ±448.
  EXPECT_CODE(0x7E, fp8_encode(464.0f, kE4M3));
  EXPECT_CODE(0x7E, fp8_encode(std::nextafter(464.0f, kInf), kE4M3));
  EXPECT_CODE(0x7E, fp8_encode(1e6f, kE4M3));
  EXPECT_CODE(0x7E, fp8_encode(FLT_MAX, kE4M3));
  EXPECT_CODE(0x7E, fp8_encode(kInf, kE4M3));
  EXPECT_CODE(0xFE, fp8_encode(-kInf, kE4M3));
  EXPECT_CODE(0xFE, fp8_encode(-1e30f, kE4M3));
  // NaN: one code, whatever the input's sign or payload.
  EXPECT_CODE(0x7F, fp8_encode(kNan, kE4M3));
  EXPECT_CODE(0x7F, fp8_encode(-kNan, kE4M3));
  EXPECT_CODE(0x7F, fp8_encode(float_of(0x7F800001u), kE4M3));
  EXPECT_CODE(0x7F, fp8_encode(float_of(0xFFC12345u), kE4M3));
  EXPECT_TRUE(std::isnan(fp8_decode(0x7F, kE4M3)));
  EXPECT_TRUE(std::isnan(fp8_decode(0xFF, kE4M3)));
  // Signed zeros survive, also when a tiny value rounds to zero.
  EXPECT_CODE(0x00, fp8_encode(0.0f, kE4M3));
  EXPECT_CODE(0x80, fp8_encode(-0.0f, kE4M3));
  EXPECT_CODE(0x80, fp8_encode(-pow2(-11), kE4M3));
  EXPECT_CODE(0x80, fp8_encode(-1e-40f, kE4M3));  // a float subnormal
  EXPECT_TRUE(std::signbit(fp8_decode(0x80, kE4M3)));
  EXPECT_EQ(fp8_decode(0x80, kE4M3), 0.0f);
}

TEST(Fp8Codec, E5M2KnownValues) {
  EXPECT_EQ(fp8_max(kE5M2), 57344.0f);
  EXPECT_STREQ(fp8_format_name(kE5M2), "e5m2");
  // Largest finite S.11110.11 = 1.75 · 2^15; 1.0 = 0.01111.00.
  EXPECT_CODE(0x7B, fp8_encode(57344.0f, kE5M2));
  EXPECT_EQ(fp8_decode(0x7B, kE5M2), 57344.0f);
  EXPECT_EQ(fp8_decode(0xFB, kE5M2), -57344.0f);
  EXPECT_CODE(0x3C, fp8_encode(1.0f, kE5M2));
  // Smallest subnormal 2^-16, smallest normal 2^-14.
  EXPECT_EQ(fp8_decode(0x01, kE5M2), pow2(-16));
  EXPECT_CODE(0x01, fp8_encode(pow2(-16), kE5M2));
  EXPECT_EQ(fp8_decode(0x03, kE5M2), 3 * pow2(-16));
  EXPECT_EQ(fp8_decode(0x04, kE5M2), pow2(-14));
  EXPECT_CODE(0x04, fp8_encode(pow2(-14), kE5M2));
  // Ties to even.
  EXPECT_CODE(0x3C, fp8_encode(1.125f, kE5M2));  // 1 | 1.25
  EXPECT_CODE(0x3D, fp8_encode(std::nextafter(1.125f, 2.0f), kE5M2));
  EXPECT_CODE(0x3E, fp8_encode(1.375f, kE5M2));  // 1.25 | 1.5
  EXPECT_CODE(0x00, fp8_encode(pow2(-17), kE5M2));
  EXPECT_CODE(0x02, fp8_encode(3 * pow2(-17), kE5M2));
  EXPECT_CODE(0x04, fp8_encode(3.5f * pow2(-16), kE5M2));  // subnormal | normal
  // Saturation: SATFINITE never produces the infinities, not even from ±inf.
  EXPECT_CODE(0x7B, fp8_encode(61440.0f, kE5M2));  // 57344 | 65536
  EXPECT_CODE(0x7B, fp8_encode(1e9f, kE5M2));
  EXPECT_CODE(0x7B, fp8_encode(kInf, kE5M2));
  EXPECT_CODE(0xFB, fp8_encode(-kInf, kE5M2));
  // The infinities and NaNs still decode.
  EXPECT_EQ(fp8_decode(0x7C, kE5M2), kInf);
  EXPECT_EQ(fp8_decode(0xFC, kE5M2), -kInf);
  for (unsigned c : {0x7Du, 0x7Eu, 0x7Fu, 0xFDu, 0xFEu, 0xFFu}) {
    EXPECT_TRUE(std::isnan(fp8_decode(uint8_t(c), kE5M2))) << hex(c);
  }
  EXPECT_CODE(0x7F, fp8_encode(kNan, kE5M2));
  EXPECT_CODE(0x7F, fp8_encode(-kNan, kE5M2));
  EXPECT_CODE(0x80, fp8_encode(-0.0f, kE5M2));
  EXPECT_CODE(0x80, fp8_encode(-pow2(-18), kE5M2));
}

// Each code's value written from the definition: (−1)^s · 2^(e − bias) · (1 + m / 2^M) for
// e > 0, (−1)^s · 2^(1 − bias) · m / 2^M for e = 0; E4M3's S.1111.111 is NaN, E5M2's exponent
// 11111 is inf (m = 0) or NaN.
TEST(Fp8Codec, EveryCodeDecodesToItsDefinition) {
  for (Fp8Format f : {kE4M3, kE5M2}) {
    const int M = f == kE4M3 ? 3 : 2, bias = f == kE4M3 ? 7 : 15, E = 7 - M;
    for (int code = 0; code < 256; ++code) {
      const int s = code >> 7, e = (code >> M) & ((1 << E) - 1), m = code & ((1 << M) - 1);
      double expected;
      if (f == kE4M3 && (code & 0x7F) == 0x7F) {
        expected = std::nan("");
      } else if (f == kE5M2 && e == 31) {
        expected = m == 0 ? HUGE_VAL : std::nan("");
      } else if (e == 0) {
        expected = std::pow(2.0, 1 - bias) * m / (1 << M);
      } else {
        expected = std::pow(2.0, e - bias) * (1.0 + double(m) / (1 << M));
      }
      if (s && !std::isnan(expected)) expected = -expected;
      const float got = fp8_decode(uint8_t(code), f);
      if (std::isnan(expected)) {
        // cuda_fp8.h's canonical NaN, widened to float.
        EXPECT_EQ(bits_of(got), 0x7FFFFFFFu) << fp8_format_name(f) << " " << hex(code);
      } else {
        EXPECT_EQ(bits_of(got), bits_of(float(expected))) << fp8_format_name(f) << " " << hex(code);
      }
    }
  }
}

TEST(Fp8Codec, EveryFiniteCodeRoundTrips) {
  for (Fp8Format f : {kE4M3, kE5M2}) {
    int finite = 0;
    for (int code = 0; code < 256; ++code) {
      const float v = fp8_decode(uint8_t(code), f);
      if (!std::isfinite(v)) continue;
      ++finite;
      EXPECT_CODE(unsigned(code), fp8_encode(v, f)) << fp8_format_name(f);
    }
    EXPECT_EQ(finite, f == kE4M3 ? 254 : 248);  // E4M3: 2 NaNs; E5M2: 2 infs, 6 NaNs
  }
}

// The nearest finite code to x by exhaustive search, ties to the even code: the definition of
// round-to-nearest-even with saturation, written without any bit manipulation.
uint8_t nearest_code(float x, Fp8Format f) {
  const int max_code = f == kE4M3 ? 0x7E : 0x7B;
  const double a = std::fabs(double(x));
  int best = 0;
  double best_distance = HUGE_VAL;
  for (int code = 0; code <= max_code; ++code) {
    const double distance = std::fabs(double(fp8_decode(uint8_t(code), f)) - a);
    if (distance < best_distance || (distance == best_distance && code % 2 == 0)) {
      best = code;
      best_distance = distance;
    }
  }
  return uint8_t(best | (std::signbit(x) ? 0x80 : 0));
}

// Inputs that probe rounding: every midpoint between adjacent codes and its neighbours, and
// random magnitudes spread over (and beyond) each format's range.
std::vector<float> rounding_probes(Fp8Format f, uint64_t seed, int random_count) {
  std::vector<float> v;
  const int max_code = f == kE4M3 ? 0x7E : 0x7B;
  for (int code = 0; code < max_code; ++code) {
    const float lo = fp8_decode(uint8_t(code), f), hi = fp8_decode(uint8_t(code + 1), f);
    const float mid = (lo + hi) / 2;  // exact: FP8 values have far fewer bits than a float
    for (float p : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf),
                    std::nextafter(lo, kInf)}) {
      v.push_back(p);
      v.push_back(-p);
    }
  }
  const float max = fp8_max(f), beyond = f == kE4M3 ? 464.0f : 61440.0f;
  for (float p : {max, beyond, std::nextafter(beyond, 0.0f), std::nextafter(beyond, kInf)}) {
    v.push_back(p);
    v.push_back(-p);
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> log2_magnitude(f == kE4M3 ? -14.0f : -22.0f,
                                                       f == kE4M3 ? 11.0f : 18.0f);
  for (int i = 0; i < random_count; ++i) {
    const float x = std::exp2(log2_magnitude(rng));
    v.push_back(i % 2 ? -x : x);
  }
  return v;
}

TEST(Fp8Codec, EncodeIsTheNearestCodeTiesToEven) {
  for (Fp8Format f : {kE4M3, kE5M2}) {
    int mismatches = 0;
    for (float x : rounding_probes(f, 11, 50000)) {
      const uint8_t expected = nearest_code(x, f), got = fp8_encode(x, f);
      if (expected != got && ++mismatches <= 5) {
        ADD_FAILURE() << fp8_format_name(f) << " x = " << x << " (" << hex(bits_of(x))
                      << "): expected " << hex(expected) << ", got " << hex(got);
      }
    }
    EXPECT_EQ(mismatches, 0) << fp8_format_name(f);
  }
}

TEST(Fp8Codec, EncodeScaledIsEncodeOfTheProduct) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 30.0f);
  std::vector<float> x(1000);
  for (auto& v : x) v = normal(rng);
  const float inv_scale = 1.0f / 0.37f;
  for (Fp8Format f : {kE4M3, kE5M2}) {
    std::vector<uint8_t> codes(x.size());
    fp8_encode_scaled(x.data(), inv_scale, codes.data(), int64_t(x.size()), f);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_CODE(fp8_encode(x[i] * inv_scale, f), codes[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// BF16

TEST(Bf16Codec, KnownValues) {
  EXPECT_CODE(0x3F80u, bf16_encode(1.0f));
  EXPECT_CODE(0xC000u, bf16_encode(-2.0f));
  EXPECT_EQ(bf16_decode(0x3F80), 1.0f);
  EXPECT_EQ(bf16_decode(0x4049), 3.140625f);
  // Ties to even: 1 + 2^-8 lies halfway between 1 (0x3F80) and 1 + 2^-7 (0x3F81).
  EXPECT_CODE(0x3F80u, bf16_encode(1.0f + pow2(-8)));
  EXPECT_CODE(0x3F81u, bf16_encode(std::nextafter(1.0f + pow2(-8), 2.0f)));
  EXPECT_CODE(0x3F82u, bf16_encode(1.0f + 3 * pow2(-8)));
  EXPECT_EQ(bf16_round(1.0f + pow2(-8)), 1.0f);
  // Overflow rounds to infinity (bf16 has one); infinities stay; NaN is canonical.
  EXPECT_CODE(0x7F80u, bf16_encode(FLT_MAX));
  EXPECT_CODE(0x7F7Fu, bf16_encode(float_of(0x7F7F7FFFu)));
  EXPECT_CODE(0x7F80u, bf16_encode(kInf));
  EXPECT_CODE(0xFF80u, bf16_encode(-kInf));
  EXPECT_CODE(0x7FFFu, bf16_encode(kNan));
  EXPECT_CODE(0x7FFFu, bf16_encode(float_of(0xFF800001u)));  // a negative signalling NaN
  // Signed zero and float subnormals (ties to even there too).
  EXPECT_CODE(0x8000u, bf16_encode(-0.0f));
  EXPECT_CODE(0x0000u, bf16_encode(float_of(0x00008000u)));
  EXPECT_CODE(0x0002u, bf16_encode(float_of(0x00018000u)));
  EXPECT_CODE(0x8001u, bf16_encode(float_of(0x80008001u)));
}

// The nearer of the two bf16 neighbours of x (ties to the even one), compared in double; the
// neighbour above 0x7F7F is 2^128, i.e. infinity.
uint16_t nearest_bf16(float x) {
  const uint32_t u = bits_of(x);
  const uint32_t magnitude = u & 0x7FFFFFFFu;
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  if (magnitude >= 0x7F800000u) return magnitude == 0x7F800000u ? uint16_t(sign | 0x7F80) : 0x7FFF;
  const uint16_t below = uint16_t(magnitude >> 16), above = uint16_t(below + 1);
  const double a = double(float_of(magnitude));
  const double lo = double(bf16_decode(below));
  const double hi = above == 0x7F80 ? std::ldexp(1.0, 128) : double(bf16_decode(above));
  const double d_lo = a - lo, d_hi = hi - a;
  const uint16_t nearest = d_lo < d_hi ? below : d_hi < d_lo ? above : (below % 2 ? above : below);
  return uint16_t(nearest | sign);
}

TEST(Bf16Codec, EncodeIsTheNearestValueTiesToEven) {
  std::mt19937_64 rng(7);
  int mismatches = 0;
  for (int i = 0; i < 400000; ++i) {
    uint32_t u = uint32_t(rng());
    if (i % 2) {  // every other input: a tie, or one float ulp either side of it
      constexpr uint32_t kNearTie[3] = {0x7FFFu, 0x8000u, 0x8001u};
      u = (u & 0xFFFF0000u) | kNearTie[(i / 2) % 3];
    }
    const float x = float_of(u);
    const uint16_t expected = nearest_bf16(x), got = bf16_encode(x);
    if (expected != got && ++mismatches <= 5) {
      ADD_FAILURE() << "bits " << hex(u) << ": expected " << hex(expected) << ", got " << hex(got);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// ---------------------------------------------------------------------------------------------
// Bit-exact agreement with CUDA's host conversions

#ifdef BALEINE_HAVE_CUDA_FP8_H

__nv_fp8_interpretation_t cuda_format(Fp8Format f) { return f == kE4M3 ? __NV_E4M3 : __NV_E5M2; }

uint8_t cuda_encode(float x, Fp8Format f) {
  return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, cuda_format(f));
}

float cuda_decode(uint8_t code, Fp8Format f) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(code, cuda_format(f))));
}

uint16_t cuda_bf16(float x) {
  const __nv_bfloat16 b = __float2bfloat16(x);
  uint16_t u;
  std::memcpy(&u, &b, sizeof u);
  return u;
}

// Random bit patterns (every exponent, subnormals, infinities, NaNs with any payload and sign),
// plus the FP8 rounding probes of both formats scaled by a few powers of two, float subnormals
// and hand-picked specials: about 4.4 million inputs.
std::vector<float> cuda_probes() {
  std::vector<float> v;
  std::mt19937_64 rng(2024);
  for (int i = 0; i < 4000000; ++i) v.push_back(float_of(uint32_t(rng())));
  for (Fp8Format f : {kE4M3, kE5M2}) {
    for (float p : rounding_probes(f, 13, 100000)) {
      for (int e : {0, -3, 5}) v.push_back(std::ldexp(p, e));
    }
  }
  for (int i = 0; i < 20000; ++i) {
    v.push_back(float_of(uint32_t(rng()) & 0x807FFFFFu));                // float subnormals
    v.push_back(float_of((uint32_t(rng()) & 0x807FFFFFu) | 0x7F800001u));  // NaN payloads
  }
  for (float p : {0.0f, -0.0f, kInf, -kInf, kNan, -kNan, FLT_MAX, -FLT_MAX, FLT_MIN,
                  FLT_TRUE_MIN, -FLT_TRUE_MIN, float_of(0x7F800001u), float_of(0xFFFFFFFFu)}) {
    v.push_back(p);
  }
  return v;
}

TEST(Fp8CudaAgreement, EveryCodeDecodesBitExactly) {
  for (Fp8Format f : {kE4M3, kE5M2}) {
    for (int code = 0; code < 256; ++code) {
      EXPECT_EQ(hex(bits_of(cuda_decode(uint8_t(code), f))),
                hex(bits_of(fp8_decode(uint8_t(code), f))))
          << fp8_format_name(f) << " code " << hex(code);
    }
  }
}

TEST(Fp8CudaAgreement, EncodeIsBitExact) {
  const std::vector<float> probes = cuda_probes();
  for (Fp8Format f : {kE4M3, kE5M2}) {
    int mismatches = 0;
    for (float x : probes) {
      const uint8_t expected = cuda_encode(x, f), got = fp8_encode(x, f);
      if (expected != got && ++mismatches <= 5) {
        ADD_FAILURE() << fp8_format_name(f) << " bits " << hex(bits_of(x)) << ": cuda "
                      << hex(expected) << ", ours " << hex(got);
      }
    }
    EXPECT_EQ(mismatches, 0) << fp8_format_name(f) << " over " << probes.size() << " inputs";
  }
}

TEST(Bf16CudaAgreement, EncodeIsBitExact) {
  std::vector<float> probes = cuda_probes();
  std::mt19937_64 rng(99);
  for (int i = 0; i < 300000; ++i) {  // bf16 midpoints and their neighbours
    const uint32_t top = uint32_t(rng()) & 0xFFFF0000u;
    for (uint32_t low : {0x8000u, 0x7FFFu, 0x8001u}) probes.push_back(float_of(top | low));
  }
  int mismatches = 0;
  for (float x : probes) {
    const uint16_t expected = cuda_bf16(x), got = bf16_encode(x);
    if (expected != got && ++mismatches <= 5) {
      ADD_FAILURE() << "bits " << hex(bits_of(x)) << ": cuda " << hex(expected) << ", ours "
                    << hex(got);
    }
  }
  EXPECT_EQ(mismatches, 0) << "over " << probes.size() << " inputs";
}

#else

constexpr const char* kNoCudaHeaders =
    "cuda_fp8.h was not found when configuring (CUDAToolkit_INCLUDE_DIRS, /usr/local/cuda/include, "
    "$CUDA_HOME/include, $CUDA_PATH/include), so the codecs are not compared with CUDA's host "
    "conversions";
TEST(Fp8CudaAgreement, EveryCodeDecodesBitExactly) { GTEST_SKIP() << kNoCudaHeaders; }
TEST(Fp8CudaAgreement, EncodeIsBitExact) { GTEST_SKIP() << kNoCudaHeaders; }
TEST(Bf16CudaAgreement, EncodeIsBitExact) { GTEST_SKIP() << kNoCudaHeaders; }

#endif

}  // namespace
}  // namespace baleine::kernels
