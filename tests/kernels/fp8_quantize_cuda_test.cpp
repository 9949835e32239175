// The CUDA FP8 quantizers (kernels/cuda/fp8_quantize.h) against the CPU ones
// (kernels/fp8_quantize.h): codes and scales must be bit-identical (both round the same exact
// amax through the same float operations, and the CPU codec equals cuda_fp8.h's conversion), so
// every comparison here is exact. Covered: E4M3 and E5M2, power-of-two scales off and on, the
// tilings of the recipe (1×128 activations, 128×128 weights, 128×1 transposed for Wgrad,
// 128×128 transposed for Dgrad) and odd ones (3×5, 7×40, 1×1), shapes 300×260, 129×257, 1×1 and
// a realistic 1024×7168, on values spread over 40 binades with NaN, ±inf, float subnormals, an
// all-zero tile, a tile of subnormals only and a tile with no finite value.
// Skips without the CUDA backend or without a GPU, as every GPU test does.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaFp8Quantize, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/fp8_quantize.h"
#include "kernels/fp8.h"
#include "kernels/fp8_quantize.h"
#include "tests/kernels/cuda_test_support.h"

namespace baleine::kernels {
namespace {

using cuda::testing::random_floats;

class CudaFp8Quantize : public cuda::testing::GpuTest {
 protected:
  // Quantizes x on both devices and expects the same view, codes and scales, bit for bit.
  void expect_same_as_cpu(const std::vector<float>& x, int64_t rows, int64_t cols, Fp8Tile tile,
                          const Fp8ScaleOptions& options, bool transposed) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) +
                 (transposed ? " transposed" : "") + " tile " + std::to_string(tile.rows) + "x" +
                 std::to_string(tile.cols) + " " + fp8_format_name(options.format) +
                 (options.power_of_two ? " pow2" : ""));
    Fp8Matrix want;
    if (transposed) {
      fp8_quantize_transposed(x.data(), rows, cols, tile, options, &want);
    } else {
      fp8_quantize(x.data(), rows, cols, tile, options, &want);
    }

    auto d_x = upload(x);
    // Filled with a pattern, so a code or scale the kernel never writes shows.
    auto d_codes = upload(std::vector<uint8_t>(static_cast<size_t>(rows * cols), 0xA5));
    const int64_t scale_count = cuda::fp8_scale_count(rows, cols, tile);
    ASSERT_EQ(scale_count, static_cast<int64_t>(want.scales.size()));
    auto d_scales = upload(std::vector<float>(static_cast<size_t>(scale_count), -3.0f));
    const Fp8View view =
        transposed ? cuda::fp8_quantize_transposed(d_x.data(), rows, cols, tile, options,
                                                   d_codes.data(), d_scales.data(), stream())
                   : cuda::fp8_quantize(d_x.data(), rows, cols, tile, options, d_codes.data(),
                                        d_scales.data(), stream());
    EXPECT_EQ(view.codes, d_codes.data());
    EXPECT_EQ(view.scales, d_scales.data());
    EXPECT_EQ(view.rows, want.rows);
    EXPECT_EQ(view.cols, want.cols);
    EXPECT_EQ(view.tile.rows, want.tile.rows);
    EXPECT_EQ(view.tile.cols, want.tile.cols);
    EXPECT_EQ(view.format, want.format);

    const std::vector<uint8_t> codes = download(d_codes);
    const std::vector<float> scales = download(d_scales);
    int64_t wrong_codes = 0, first_wrong = -1;
    for (size_t i = 0; i < codes.size(); ++i) {
      if (codes[i] != want.codes[i]) {
        if (wrong_codes++ == 0) first_wrong = static_cast<int64_t>(i);
      }
    }
    EXPECT_EQ(wrong_codes, 0) << "first at " << first_wrong << ": got "
                              << (first_wrong >= 0 ? int(codes[first_wrong]) : 0) << ", want "
                              << (first_wrong >= 0 ? int(want.codes[first_wrong]) : 0);
    for (size_t i = 0; i < scales.size(); ++i) {
      uint32_t got_bits, want_bits;
      std::memcpy(&got_bits, &scales[i], sizeof got_bits);
      std::memcpy(&want_bits, &want.scales[i], sizeof want_bits);
      ASSERT_EQ(got_bits, want_bits) << "scale " << i << ": got " << scales[i] << ", want "
                                     << want.scales[i];
    }
  }
};

// Non-zero values whose magnitudes spread over 2^-20 … 2^20 (so tiles get different scales
// and many codes land in FP8's subnormals or round to zero), then the edge cases, placed by
// the tiling `tile` of x: tile (0, 0) all zero, the last tile subnormals only, tile (0, last)
// NaN and ±inf only (scale 1), and scattered NaN, ±inf and subnormals elsewhere.
std::vector<float> hard_values(int64_t rows, int64_t cols, Fp8Tile tile, uint32_t seed) {
  std::vector<float> x = random_floats(rows * cols, seed);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      x[r * cols + c] = std::ldexp(x[r * cols + c], int((r * 13 + c * 7) % 41) - 20);
    }
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (i % 97 == 5) x[i] = nan;
    if (i % 89 == 7) x[i] = inf;
    if (i % 83 == 11) x[i] = -inf;
    if (i % 79 == 13) x[i] = -3e-42f;  // a float subnormal next to normal values
  }
  const int64_t row_tiles = (rows + tile.rows - 1) / tile.rows;
  const int64_t col_tiles = (cols + tile.cols - 1) / tile.cols;
  const auto fill_tile = [&](int64_t tr, int64_t tc, auto value_of) {
    for (int64_t r = tr * tile.rows; r < std::min(rows, (tr + 1) * tile.rows); ++r) {
      for (int64_t c = tc * tile.cols; c < std::min(cols, (tc + 1) * tile.cols); ++c) {
        x[r * cols + c] = value_of(r, c);
      }
    }
  };
  fill_tile(row_tiles - 1, col_tiles - 1, [&](int64_t r, int64_t c) {
    return float((r + c) % 2 ? 1e-39 : -2.5e-40) * float(1 + (r * 3 + c) % 5);
  });
  if (col_tiles > 1) {
    fill_tile(0, col_tiles - 1, [&](int64_t r, int64_t c) {
      return (r + c) % 3 == 0 ? nan : ((r + c) % 3 == 1 ? inf : -inf);
    });
  }
  if (row_tiles * col_tiles > 1) fill_tile(0, 0, [](int64_t, int64_t) { return 0.0f; });
  return x;
}

constexpr Fp8Format kFormats[] = {Fp8Format::kE4M3, Fp8Format::kE5M2};

TEST_F(CudaFp8Quantize, EveryTilingFormatAndScaleRuleMatchesTheCpuBitForBit) {
  struct Shape {
    int64_t rows, cols;
  };
  const Shape shapes[] = {{300, 260}, {129, 257}, {1, 1}};
  const Fp8Tile tiles[] = {{1, 128}, {128, 128}, {128, 1}, {3, 5}, {7, 40}, {1, 1}};
  for (const Shape& s : shapes) {
    for (const Fp8Tile& tile : tiles) {
      const std::vector<float> x = hard_values(s.rows, s.cols, tile, 1);
      for (const Fp8Format format : kFormats) {
        for (const bool power_of_two : {false, true}) {
          for (const bool transposed : {false, true}) {
            expect_same_as_cpu(x, s.rows, s.cols, tile, {format, power_of_two}, transposed);
          }
        }
      }
    }
  }
}

// The recipe's tilings at a DeepSeek-like width: activations [1024 tokens, K 7168].
TEST_F(CudaFp8Quantize, RealisticShapesMatchTheCpuBitForBit) {
  const int64_t rows = 1024, cols = 7168;
  struct Case {
    Fp8Tile tile;
    bool transposed;
  };
  const Case cases[] = {{{1, 128}, false}, {{128, 128}, false}, {{128, 1}, true},
                        {{128, 128}, true}};
  for (const Case& c : cases) {
    const std::vector<float> x = hard_values(rows, cols, c.tile, 2);
    for (const Fp8Format format : kFormats) {
      expect_same_as_cpu(x, rows, cols, c.tile, {format, false}, c.transposed);
      expect_same_as_cpu(x, rows, cols, c.tile, {format, true}, c.transposed);
    }
  }
}

// What the CPU comparison takes on trust, spelled out on one 1×128 tile (E4M3): the scale is
// amax / 448 over the finite values, NaN → 0x7F, ±inf → ±448 (0x7E / 0xFE), amax → 448.
TEST_F(CudaFp8Quantize, OneTileByHand) {
  std::vector<float> x(128, 0.25f);
  x[0] = 3.5f;  // amax
  x[1] = std::nanf("");
  x[2] = std::numeric_limits<float>::infinity();
  x[3] = -std::numeric_limits<float>::infinity();
  x[4] = -3.5f;
  auto d_x = upload(x);
  auto d_codes = empty<uint8_t>(128);
  auto d_scales = empty<float>(1);
  cuda::fp8_quantize(d_x.data(), 1, 128, {1, 128}, {Fp8Format::kE4M3, false}, d_codes.data(),
                     d_scales.data(), stream());
  const std::vector<uint8_t> codes = download(d_codes);
  EXPECT_EQ(download(d_scales)[0], 3.5f / 448.0f);
  EXPECT_EQ(codes[0], 0x7E);
  EXPECT_EQ(codes[1], 0x7F);
  EXPECT_EQ(codes[2], 0x7E);
  EXPECT_EQ(codes[3], 0xFE);
  EXPECT_EQ(codes[4], 0xFE);
  EXPECT_EQ(codes[5], fp8_encode(0.25f * (1.0f / (3.5f / 448.0f)), Fp8Format::kE4M3));
}

TEST_F(CudaFp8Quantize, EmptyAndInvalidShapes) {
  const Fp8View empty_view = cuda::fp8_quantize(nullptr, 0, 7168, {1, 128}, {}, nullptr,
                                                nullptr, stream());
  EXPECT_EQ(empty_view.rows, 0);
  EXPECT_EQ(empty_view.cols, 7168);
  EXPECT_EQ(cuda::fp8_scale_count(0, 7168, {1, 128}), 0);
  EXPECT_EQ(cuda::fp8_scale_count(300, 260, {128, 128}), 9);
  EXPECT_THROW(cuda::fp8_quantize(nullptr, -1, 4, {1, 128}, {}, nullptr, nullptr, stream()),
               std::invalid_argument);
  EXPECT_THROW(
      cuda::fp8_quantize_transposed(nullptr, 4, 4, {0, 128}, {}, nullptr, nullptr, stream()),
      std::invalid_argument);
}

}  // namespace
}  // namespace baleine::kernels

#endif  // BALEINE_HAVE_CUDA
