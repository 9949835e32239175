// The EP wire encodings (trainer/model/expert_wire.h): FP8 rows carry exactly the codes and
// power-of-two scales the quantizer produces, in dim + ceil(dim/tile) bytes a row (about half
// of BF16's 2·dim); BF16 rows round to nearest even.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/gradcheck.h"
#include "trainer/model/expert_wire.h"

namespace baleine::model {
namespace {

namespace k = baleine::kernels;
using baleine::testing::random_vector;
using baleine::testing::to_float;

TEST(ExpertWire, Fp8RowsCarryTheQuantizersCodesAndPowerOfTwoScales) {
  const int64_t n = 33, dim = 300, tile = 128;  // 3 tiles a row, the last one partial
  auto rows = to_float(random_vector(n * dim, 11));
  for (size_t i = 0; i < rows.size(); i += 53) rows[i] *= 1000;  // spread the scales
  kernels::Array<uint8_t> wire;
  encode_fp8_rows(rows.data(), n, dim, tile, k::Fp8Format::kE4M3, wire);
  EXPECT_EQ(static_cast<int64_t>(wire.size()), n * fp8_wire_row_bytes(dim, tile));
  EXPECT_EQ(fp8_wire_row_bytes(dim, tile), 303);

  k::Fp8Matrix received, expected;
  decode_fp8_rows(wire.data(), n, dim, tile, k::Fp8Format::kE4M3, &received);
  k::Fp8ScaleOptions pow2;
  pow2.power_of_two = true;
  k::fp8_quantize(rows.data(), n, dim, {1, tile}, pow2, &expected);
  EXPECT_EQ(received.codes, expected.codes);
  EXPECT_EQ(received.scales, expected.scales);
  EXPECT_EQ(received.tile.rows, 1);
  EXPECT_EQ(received.tile.cols, tile);
}

TEST(ExpertWire, TinyScalesStayWithinOneByte) {
  // A tile of values around 1e-40 (float subnormals) would want a scale below 2^-127, the
  // smallest one exponent byte carries: the scale sent is a power of two ≥ 2^-127 and the
  // codes are those of that scale, so each value is off by at most half an FP8 subnormal step
  // (2^-10 · scale for E4M3) beyond E4M3's 2^-4 relative rounding.
  std::vector<float> rows(128, 1e-40f);
  rows[5] = -3e-40f;
  kernels::Array<uint8_t> wire;
  encode_fp8_rows(rows.data(), 1, 128, 128, k::Fp8Format::kE4M3, wire);
  k::Fp8Matrix received;
  decode_fp8_rows(wire.data(), 1, 128, 128, k::Fp8Format::kE4M3, &received);
  const float scale = received.scales[0];
  EXPECT_GE(scale, std::ldexp(1.0f, -127));
  EXPECT_EQ(scale, std::ldexp(1.0f, std::ilogb(scale))) << "a power of two";
  for (int i = 0; i < 128; ++i) {
    const float back = k::fp8_decode(received.codes[i], k::Fp8Format::kE4M3) * scale;
    EXPECT_LE(std::abs(back - rows[i]), std::abs(rows[i]) / 16 + std::ldexp(scale, -10)) << i;
  }
}

TEST(ExpertWire, Bf16RowsRoundToNearestEven) {
  const int64_t n = 7, dim = 50;
  const auto rows = random_vector(n * dim, 12);
  kernels::Array<uint8_t> wire;
  encode_bf16_rows(rows.data(), n, dim, wire);
  EXPECT_EQ(static_cast<int64_t>(wire.size()), 2 * n * dim);
  std::vector<double> back(rows.size());
  decode_bf16_rows(wire.data(), n, dim, back.data());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(back[i], k::bf16_round(static_cast<float>(rows[i])));
    EXPECT_NEAR(back[i], rows[i], std::abs(rows[i]) * std::ldexp(1.0, -8));
  }
}

}  // namespace
}  // namespace baleine::model
