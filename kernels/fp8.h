#pragma once
// Low-precision number formats: FP8 (E4M3, E5M2; Micikevicius et al. 2022, "FP8 Formats for
// Deep Learning") and BF16, as bit patterns on the CPU.
//
// Every conversion is bit-identical to CUDA's host conversions (cuda_fp8.h / cuda_bf16.h), so
// a tensor quantized here and one quantized on a GPU hold the same bytes:
//   fp8_encode(x, f)  == __nv_cvt_float_to_fp8(x, __NV_SATFINITE, f)
//   fp8_decode(c, f)  == the value of __nv_cvt_fp8_to_halfraw(c, f)
//   bf16_encode(x)    == __float2bfloat16(x) (round to nearest even)
// tests/kernels/fp8_codec_test.cpp checks all of them against those headers.
#include <cstdint>

namespace baleine::kernels {

enum class Fp8Format {
  kE4M3,  // 4 exponent bits, 3 mantissa; max 448, no infinity, NaN = 0x7F/0xFF
  kE5M2,  // 5 exponent bits, 2 mantissa; max 57344, has infinities
};

const char* fp8_format_name(Fp8Format format);  // "e4m3" | "e5m2"
// The largest finite value: 448 (E4M3) or 57344 (E5M2).
float fp8_max(Fp8Format format);

// Round to nearest even; magnitudes beyond the largest finite value (infinities included)
// saturate to ±max; NaN becomes 0x7F. Signed zeros keep their sign.
uint8_t fp8_encode(float x, Fp8Format format);
// Exact: every FP8 value is a float.
float fp8_decode(uint8_t code, Fp8Format format);

// Bulk: out[i] = fp8_encode(x[i] * inv_scale). (Multiplying by the reciprocal, as GPU
// quantizers do, so CPU and GPU codes agree.)
void fp8_encode_scaled(const float* x, float inv_scale, uint8_t* out, int64_t n,
                       Fp8Format format);

// BF16: the top 16 bits of a float, rounded to nearest even; NaN becomes 0x7FFF.
inline uint16_t bf16_encode(float x) {
  union {
    float f;
    uint32_t u;
  } v{x};
  if ((v.u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
  return static_cast<uint16_t>((v.u + 0x7FFFu + ((v.u >> 16) & 1u)) >> 16);
}
inline float bf16_decode(uint16_t bits) {
  union {
    uint32_t u;
    float f;
  } v{static_cast<uint32_t>(bits) << 16};
  return v.f;
}
// x rounded to the nearest BF16 value.
inline float bf16_round(float x) { return bf16_decode(bf16_encode(x)); }

}  // namespace baleine::kernels
