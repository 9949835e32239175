// The CUDA FP8 dequantizer (kernels/cuda/fp8_dequantize.h) against kernels::fp8_dequantize<float>:
// the decode is exact and the product one FP32 multiplication on both sides, so every comparison
// is bit for bit. Matrices are quantized on the CPU (kernels::fp8_quantize) from values spread
// over ~250 binades (large ones near 2^114, float subnormals, tiles whose scale is the FLT_MIN
// floor so the products are subnormal), in 1×128, 128×1, 128×128 and odd tiles, on aligned
// shapes (the float4 path), ragged ones (37×200, 130×70: the scalar path and edge tiles), tall
// ones (threads walking several rows) and unaligned pointers; E4M3 and E5M2, power-of-two
// scales off and on. Then every one of the 256 codes of each format, and the argument checks.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaFp8Dequantize, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/fp8_dequantize.h"
#include "kernels/fp8.h"
#include "kernels/fp8_quantize.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;

constexpr Fp8Format kFormats[] = {Fp8Format::kE4M3, Fp8Format::kE5M2};

// Never zero (random_floats), 2^±4 of spread within a neighbourhood so most codes are nonzero,
// and bands of 2^114 … 2^-130 that change every 3 rows and 50 columns, so some tiles are huge,
// some hold float subnormals and some get the FLT_MIN scale.
std::vector<float> wide_range_values(int64_t rows, int64_t cols, uint32_t seed) {
  constexpr int kBands[] = {0, 60, -60, 110, -124, -130};
  std::vector<float> x = random_floats(rows * cols, seed);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int band = kBands[(r / 3 + c / 50) % 6];
      x[r * cols + c] = std::ldexp(x[r * cols + c], band + int((r * 13 + c * 7) % 9) - 4);
    }
  }
  return x;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

class CudaFp8Dequantize : public cuda::testing::GpuTest {
 protected:
  // Quantizes x on the CPU, dequantizes it on both devices and expects the same bytes. The
  // device codes and output start `offset` elements into their buffers (1: unaligned, so the
  // scalar path); the output buffer is prefilled so an unwritten value, or one written outside
  // [offset, offset + rows·cols), shows.
  void expect_same_as_cpu(const std::vector<float>& x, int64_t rows, int64_t cols, Fp8Tile tile,
                          const Fp8ScaleOptions& options, int64_t offset = 0) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " tile " +
                 std::to_string(tile.rows) + "x" + std::to_string(tile.cols) + " " +
                 fp8_format_name(options.format) + (options.power_of_two ? " pow2" : "") +
                 (offset != 0 ? " unaligned" : ""));
    Fp8Matrix q;
    fp8_quantize(x.data(), rows, cols, tile, options, &q);
    const int64_t n = rows * cols;
    std::vector<float> want(static_cast<size_t>(n));
    fp8_dequantize(q.view(), want.data());

    std::vector<uint8_t> codes(static_cast<size_t>(offset), 0);
    codes.insert(codes.end(), q.codes.data(), q.codes.data() + n);
    auto d_codes = upload(codes);
    auto d_scales = upload(std::vector<float>(q.scales.data(), q.scales.data() + q.scales.size()));
    constexpr float kPattern = -1234.5f;
    auto d_out = upload(std::vector<float>(static_cast<size_t>(n + 2 * offset), kPattern));
    Fp8View view = q.view();
    view.codes = d_codes.data() + offset;
    view.scales = d_scales.data();
    cuda::fp8_dequantize(view, d_out.data() + offset, stream());
    const std::vector<float> got = download(d_out);

    for (int64_t i = 0; i < offset; ++i) {
      EXPECT_TRUE(same_bits(got[i], kPattern)) << "wrote before the output";
      EXPECT_TRUE(same_bits(got[offset + n + i], kPattern)) << "wrote after the output";
    }
    const size_t bytes = sizeof(float) * static_cast<size_t>(n);
    if (std::memcmp(got.data() + offset, want.data(), bytes) != 0) {
      int64_t wrong = 0, first = -1;
      for (int64_t i = 0; i < n; ++i) {
        if (!same_bits(got[offset + i], want[i]) && wrong++ == 0) first = i;
      }
      ADD_FAILURE() << wrong << " values differ; first at row " << first / cols << ", column "
                    << first % cols << ": got " << got[offset + first] << ", want "
                    << want[first];
    }
  }
};

TEST_F(CudaFp8Dequantize, EveryTilingFormatAndScaleRuleMatchesTheCpuBitForBit) {
  struct Case {
    int64_t rows, cols;
    Fp8Tile tile;
  };
  const Case cases[] = {
      {256, 384, {1, 128}},  {256, 384, {128, 1}}, {256, 384, {128, 128}},  // the recipe's
      {37, 200, {1, 128}},   {130, 70, {128, 128}},                         // ragged
      {53, 101, {7, 40}},    {5000, 8, {7, 3}},     {5000, 9, {128, 1}},    // odd; tall
      {3, 5, {1000, 1000}},  {1, 1, {1, 1}},                                // tile > matrix
  };
  for (const Case& c : cases) {
    const std::vector<float> x = wide_range_values(c.rows, c.cols, 7);
    for (const Fp8Format format : kFormats) {
      for (const bool power_of_two : {false, true}) {
        expect_same_as_cpu(x, c.rows, c.cols, c.tile, {format, power_of_two});
      }
    }
  }
}

// Codes and output one element into their buffers: the scalar path on a shape that would
// otherwise take the float4 one, and nothing written outside the output.
TEST_F(CudaFp8Dequantize, UnalignedPointersMatchTheCpuBitForBit) {
  const std::vector<float> x = wide_range_values(96, 256, 11);
  for (const Fp8Format format : kFormats) {
    expect_same_as_cpu(x, 96, 256, {1, 128}, {format, false}, 1);
    expect_same_as_cpu(x, 96, 256, {128, 128}, {format, true}, 1);
  }
}

// All 256 codes: with scale 1 each decodes as kernels::fp8_decode (signed zeros, subnormals,
// E5M2's infinities; NaN codes give a NaN), and with the FLT_MIN scale floor the products are
// float subnormals that must not be flushed.
TEST_F(CudaFp8Dequantize, EveryCodeDecodesLikeTheCpuCodec) {
  std::vector<uint8_t> codes(2 * 256);
  for (int i = 0; i < 2 * 256; ++i) codes[i] = static_cast<uint8_t>(i % 256);
  const std::vector<float> scales = {1.0f, FLT_MIN};  // row 0, row 1 (tiles 1×256)
  auto d_codes = upload(codes);
  auto d_scales = upload(scales);
  for (const Fp8Format format : kFormats) {
    SCOPED_TRACE(fp8_format_name(format));
    auto d_out = empty<float>(2 * 256);
    const Fp8View view{d_codes.data(), d_scales.data(), 2, 256, {1, 256}, format};
    cuda::fp8_dequantize(view, d_out.data(), stream());
    const std::vector<float> got = download(d_out);
    for (int row = 0; row < 2; ++row) {
      for (int code = 0; code < 256; ++code) {
        const float want = fp8_decode(static_cast<uint8_t>(code), format) * scales[row];
        const float value = got[row * 256 + code];
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(value)) << "row " << row << ", code " << code;
        } else {
          EXPECT_TRUE(same_bits(value, want))
              << "row " << row << ", code " << code << ": got " << value << ", want " << want;
        }
      }
    }
  }
}

TEST_F(CudaFp8Dequantize, EmptyAndInvalidArguments) {
  // Empty: nothing enqueued, null pointers allowed, the output untouched.
  cuda::fp8_dequantize(Fp8View{nullptr, nullptr, 0, 7168, {1, 128}, Fp8Format::kE4M3},
                       nullptr, stream());
  auto d_out = upload(std::vector<float>{3.0f});
  cuda::fp8_dequantize(Fp8View{nullptr, nullptr, 4, 0, {1, 128}, Fp8Format::kE5M2},
                       d_out.data(), stream());
  EXPECT_EQ(download(d_out)[0], 3.0f);

  auto d_codes = upload(std::vector<uint8_t>(4, 0x38));
  auto d_scales = upload(std::vector<float>{1.0f});
  const Fp8View good{d_codes.data(), d_scales.data(), 2, 2, {128, 128}, Fp8Format::kE4M3};
  Fp8View bad = good;
  bad.rows = -1;
  EXPECT_THROW(cuda::fp8_dequantize(bad, d_out.data(), stream()), std::invalid_argument);
  bad = good;
  bad.tile = {0, 128};
  EXPECT_THROW(cuda::fp8_dequantize(bad, d_out.data(), stream()), std::invalid_argument);
  bad = good;
  bad.codes = nullptr;
  EXPECT_THROW(cuda::fp8_dequantize(bad, d_out.data(), stream()), std::invalid_argument);
  bad = good;
  bad.scales = nullptr;
  EXPECT_THROW(cuda::fp8_dequantize(bad, d_out.data(), stream()), std::invalid_argument);
  EXPECT_THROW(cuda::fp8_dequantize(good, nullptr, stream()), std::invalid_argument);
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
