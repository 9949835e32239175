// Fine-grained FP8 quantization: the quantizers against a plain per-tile reference (bitwise, on
// odd shapes and shapes that cross the parallel work items), the quantize → dequantize error
// against the FP8 rounding bound, each tile's scale (its formula, power-of-two rounding, the
// all-zero, non-finite and tiny cases), the fused transpose against an explicit transpose,
// row slices, double input, dequantization and thread-count determinism. Both formats.
#include "kernels/fp8_quantize.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace baleine::kernels {
namespace {

constexpr Fp8Format kFormats[] = {Fp8Format::kE4M3, Fp8Format::kE5M2};
constexpr Fp8Tile kTiles[] = {{1, 128}, {128, 1}, {128, 128}, {5, 7}};
const float kInf = std::numeric_limits<float>::infinity();

struct Shape {
  int64_t rows, cols;
};
// Not multiples of the tiles, one row, one short row, and a tile's size plus one.
constexpr Shape kShapes[] = {{200, 300}, {1, 5}, {129, 127}, {3, 1000}, {257, 130}};

std::string describe(Shape s, Fp8Tile t, const Fp8ScaleOptions& o) {
  return std::to_string(s.rows) + "x" + std::to_string(s.cols) + " tile " +
         std::to_string(t.rows) + "x" + std::to_string(t.cols) + " " + fp8_format_name(o.format) +
         (o.power_of_two ? " pow2" : "");
}

// Normal values with a different magnitude per row (2^-12 … 2^12, so tiles differ), 1% outliers
// 1000× larger (they coarsen their own tile only), 2% values 10^-6 of their row's size (they
// land in FP8's subnormal range) and 1% exact zeros.
std::vector<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> x(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float row_scale = std::exp2(24.0f * uniform(rng) - 12.0f);
    for (int64_t c = 0; c < cols; ++c) {
      const float u = uniform(rng);
      float v = normal(rng) * row_scale;
      if (u < 0.01f) v *= 1000.0f;
      else if (u < 0.03f) v *= 1e-6f;
      else if (u < 0.04f) v = 0.0f;
      x[size_t(r * cols + c)] = v;
    }
  }
  return x;
}

std::vector<float> transpose(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> t(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[size_t(c * rows + r)] = x[size_t(r * cols + c)];
  return t;
}

// The quantizer as the header defines it, one tile at a time with no attention to speed: amax
// over the tile's finite values, scale = amax / fp8_max (at least FLT_MIN; rounded up to a power
// of two on request; 1 for a tile without a nonzero finite value), code = fp8_encode(x · (1/s)).
Fp8Matrix reference_quantize(const std::vector<float>& x, int64_t rows, int64_t cols,
                             Fp8Tile tile, const Fp8ScaleOptions& options) {
  Fp8Matrix q;
  q.rows = rows;
  q.cols = cols;
  q.tile = tile;
  q.format = options.format;
  q.codes.resize(x.size());
  const int64_t tile_rows = (rows + tile.rows - 1) / tile.rows;
  const int64_t tile_cols = (cols + tile.cols - 1) / tile.cols;
  q.scales.resize(size_t(tile_rows * tile_cols));
  for (int64_t i = 0; i < tile_rows; ++i) {
    for (int64_t j = 0; j < tile_cols; ++j) {
      const int64_t r1 = std::min(rows, (i + 1) * tile.rows);
      const int64_t c1 = std::min(cols, (j + 1) * tile.cols);
      float amax = 0;
      for (int64_t r = i * tile.rows; r < r1; ++r)
        for (int64_t c = j * tile.cols; c < c1; ++c) {
          const float v = std::fabs(x[size_t(r * cols + c)]);
          if (std::isfinite(v)) amax = std::max(amax, v);
        }
      float scale = 1.0f;
      if (amax > 0) {
        scale = std::max(amax / fp8_max(options.format), FLT_MIN);
        if (options.power_of_two) scale = float(std::exp2(std::ceil(std::log2(double(scale)))));
      }
      q.scales[size_t(i * tile_cols + j)] = scale;
      const float inv = 1.0f / scale;
      for (int64_t r = i * tile.rows; r < r1; ++r)
        for (int64_t c = j * tile.cols; c < c1; ++c)
          q.codes[size_t(r * cols + c)] = fp8_encode(x[size_t(r * cols + c)] * inv, options.format);
    }
  }
  return q;
}

void expect_same_matrix(const Fp8Matrix& expected, const Fp8Matrix& got, const std::string& what) {
  ASSERT_EQ(expected.rows, got.rows) << what;
  ASSERT_EQ(expected.cols, got.cols) << what;
  ASSERT_EQ(expected.tile.rows, got.tile.rows) << what;
  ASSERT_EQ(expected.tile.cols, got.tile.cols) << what;
  ASSERT_EQ(expected.format, got.format) << what;
  ASSERT_EQ(expected.scales.size(), got.scales.size()) << what;
  ASSERT_EQ(expected.codes.size(), got.codes.size()) << what;
  size_t bad_scales = 0, bad_codes = 0, first_bad_code = 0;
  for (size_t i = 0; i < expected.scales.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &expected.scales[i], 4);
    std::memcpy(&b, &got.scales[i], 4);
    bad_scales += a != b;
  }
  for (size_t i = expected.codes.size(); i-- > 0;) {
    if (expected.codes[i] != got.codes[i]) {
      ++bad_codes;
      first_bad_code = i;
    }
  }
  EXPECT_EQ(bad_scales, 0u) << what << ": scales differ";
  EXPECT_EQ(bad_codes, 0u) << what << ": codes differ, first at " << first_bad_code << " ("
                           << int(expected.codes[first_bad_code]) << " expected, "
                           << int(got.codes[first_bad_code]) << " got)";
}

// Half the spacing of the FP8 values around m ≥ 0 (m in units of the scale): 2^(e − M) / 2 in
// the binade [2^e, 2^(e+1)) with M mantissa bits; below the smallest normal 2^emin, half the
// subnormal step 2^(emin − M). E4M3: M = 3, emin = −6; E5M2: M = 2, emin = −14.
double fp8_half_ulp(double m, Fp8Format f) {
  const int M = f == Fp8Format::kE4M3 ? 3 : 2, emin = f == Fp8Format::kE4M3 ? -6 : -14;
  const int e = m < std::ldexp(1.0, emin) ? emin : std::ilogb(std::min(m, double(fp8_max(f))));
  return std::ldexp(0.5, e - M);
}

// Checks each element's quantize → dequantize error and each tile's scale and codes against
// what the header promises, from x alone.
//
// Error bound. The code of x is RNE(y) with y = fl(x · fl(1/s)) = (x/s)(1 + δ), |δ| ≤ 2^-23
// (two float roundings of at most 2^-24 each; δ = 0 for power-of-two scales, whose reciprocal
// and products are exact). Rounding to FP8 moves y by at most half an FP8 ulp at |y|, and the
// dequantized value decode(code) · s is exact in double, so
//   |decode(code) · s − x| ≤ half_ulp(|x| / s) · s + 2^-23 · |x|.
// (When |x|/s sits just below a power of two and y just above it, y's half ulp is twice as
// large, but then y rounds to that power of two and the error is |y − x/s| · s ≤ 2^-23 · |x|.
// Saturation: |x|/s ≤ fp8_max up to the same δ.) The test allows 2^-22 · |x|, still 2^18 times
// below E4M3's relative half ulp, so a wrong scale or rounding cannot hide in the slack.
void check_against_bounds(const std::vector<float>& x, const Fp8Matrix& q,
                          const Fp8ScaleOptions& options, const std::string& what) {
  const Fp8View view = q.view();
  const double max = fp8_max(options.format);
  std::vector<double> deq(x.size());
  fp8_dequantize(view, deq.data());
  int failures = 0;
  for (int64_t i = 0; i < view.tile_rows(); ++i) {
    for (int64_t j = 0; j < view.tile_cols(); ++j) {
      const float s = q.scales[size_t(i * view.tile_cols() + j)];
      const double slack = options.power_of_two ? 0.0 : std::ldexp(1.0, -22);
      double amax = 0, max_code_value = 0;
      for (int64_t r = i * q.tile.rows; r < std::min(q.rows, (i + 1) * q.tile.rows); ++r) {
        for (int64_t c = j * q.tile.cols; c < std::min(q.cols, (j + 1) * q.tile.cols); ++c) {
          const size_t k = size_t(r * q.cols + c);
          const double v = x[k], code_value = std::fabs(fp8_decode(q.codes[k], options.format));
          amax = std::max(amax, std::fabs(v));
          max_code_value = std::max(max_code_value, code_value);
          const double bound =
              fp8_half_ulp(std::fabs(v) / s, options.format) * s + slack * std::fabs(v);
          if (!(std::fabs(deq[k] - v) <= bound) && ++failures <= 5) {
            ADD_FAILURE() << what << " x[" << r << "," << c << "] = " << v << " dequantized "
                          << deq[k] << " scale " << s << ": error " << std::fabs(deq[k] - v)
                          << " > bound " << bound;
          }
          if (std::signbit(deq[k]) != std::signbit(v) && deq[k] != 0 && ++failures <= 5) {
            ADD_FAILURE() << what << " sign flipped at [" << r << "," << c << "]";
          }
        }
      }
      const std::string tile = what + " tile (" + std::to_string(i) + "," + std::to_string(j) + ")";
      if (amax == 0) {
        EXPECT_EQ(s, 1.0f) << tile;
        continue;
      }
      EXPECT_LE(max_code_value, max) << tile;
      // Scales stop at FLT_MIN (so that 1/scale is finite); such a tile's codes stay below max.
      const bool floored = float(amax) / float(max) < FLT_MIN;
      const double ideal = std::max(amax / max, double(FLT_MIN));
      if (options.power_of_two) {
        // The smallest power of two ≥ amax / fp8_max: amax / scale is then above max / 2, and
        // its code at least max / 2 (it may round down onto it).
        int e;
        EXPECT_EQ(std::frexp(double(s), &e), 0.5) << tile << ": scale " << s;
        EXPECT_GE(double(s), ideal) << tile;
        EXPECT_LT(double(s) / 2, ideal) << tile;
        if (!floored) {
          EXPECT_GE(max_code_value, max / 2) << tile;
        }
      } else {
        EXPECT_EQ(s, std::max(float(amax) / float(max), FLT_MIN)) << tile;
        if (!floored) {
          EXPECT_EQ(max_code_value, max) << tile << ": the tile's amax must map onto fp8_max";
        }
      }
    }
  }
}

TEST(Fp8Quantize, MatchesReferenceAndErrorBounds) {
  uint64_t seed = 1;
  for (Shape shape : kShapes) {
    const auto x = random_matrix(shape.rows, shape.cols, seed++);
    for (Fp8Tile tile : kTiles) {
      for (Fp8Format format : kFormats) {
        for (bool pow2 : {false, true}) {
          const Fp8ScaleOptions options{format, pow2};
          const std::string what = describe(shape, tile, options);
          Fp8Matrix q;
          fp8_quantize(x.data(), shape.rows, shape.cols, tile, options, &q);
          expect_same_matrix(reference_quantize(x, shape.rows, shape.cols, tile, options), q, what);
          check_against_bounds(x, q, options, what);
        }
      }
    }
  }
}

// The fused transpose gives exactly the codes and scales of quantizing the explicit transpose
// with the transposed tile (the Wgrad operand: x [tokens, K] with 128×1 tiles).
TEST(Fp8Quantize, TransposedEqualsQuantizingTheTranspose) {
  uint64_t seed = 100;
  for (Shape shape : kShapes) {
    const auto x = random_matrix(shape.rows, shape.cols, seed++);
    const auto xt = transpose(x, shape.rows, shape.cols);
    for (Fp8Tile tile : kTiles) {
      for (Fp8Format format : kFormats) {
        for (bool pow2 : {false, true}) {
          const Fp8ScaleOptions options{format, pow2};
          Fp8Matrix fused, explicit_transpose;
          fp8_quantize_transposed(x.data(), shape.rows, shape.cols, tile, options, &fused);
          fp8_quantize(xt.data(), shape.cols, shape.rows, {tile.cols, tile.rows}, options,
                       &explicit_transpose);
          expect_same_matrix(explicit_transpose, fused, describe(shape, tile, options));
        }
      }
    }
  }
}

// Shapes large enough to be cut into several work items in both directions (the quantizer
// groups up to 16 rows and, for one-row tiles, 64 Ki columns): every item boundary and the
// ragged last item must match the reference.
TEST(Fp8Quantize, LargeShapesMatchReferenceAcrossWorkItems) {
  const struct {
    Shape shape;
    Fp8Tile tile;
  } cases[] = {{{17, 65700}, {1, 128}}, {{300, 1100}, {128, 1}}, {{260, 1030}, {128, 128}}};
  uint64_t seed = 200;
  for (const auto& c : cases) {
    const auto x = random_matrix(c.shape.rows, c.shape.cols, seed++);
    const auto xt = transpose(x, c.shape.rows, c.shape.cols);
    const Fp8ScaleOptions options{Fp8Format::kE4M3, false};
    const std::string what = describe(c.shape, c.tile, options);
    Fp8Matrix q, qt;
    fp8_quantize(x.data(), c.shape.rows, c.shape.cols, c.tile, options, &q);
    expect_same_matrix(reference_quantize(x, c.shape.rows, c.shape.cols, c.tile, options), q, what);
    fp8_quantize_transposed(x.data(), c.shape.rows, c.shape.cols, c.tile, options, &qt);
    expect_same_matrix(reference_quantize(xt, c.shape.cols, c.shape.rows,
                                          {c.tile.cols, c.tile.rows}, options),
                       qt, what + " transposed");
  }
}

// Every code must equal fp8_encode of the scaled value, also on the values where rounding is
// delicate. A tile holding fp8_max gets scale 1 (exactly, with power-of-two scales), so the
// quantizer then encodes the values themselves: every code, every midpoint between adjacent
// codes and one float ulp either side of it, float subnormals, signed zeros, ±inf and NaN.
TEST(Fp8Quantize, EncodesRoundingEdgeCasesLikeTheCodec) {
  for (Fp8Format format : kFormats) {
    const float max = fp8_max(format);
    std::vector<float> row;
    for (int code = 0; code <= 0x7F; ++code) {
      const float lo = fp8_decode(uint8_t(code), format);
      const float hi = fp8_decode(uint8_t(code + 1), format);
      if (!std::isfinite(lo) || !std::isfinite(hi) || hi > max) continue;
      const float mid = (lo + hi) / 2;
      for (float v : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) {
        row.push_back(v);
        row.push_back(-v);
      }
    }
    for (float v : {1e-40f, -1e-40f, -0.0f, 0.0f, kInf, -kInf, std::nanf("")}) row.push_back(v);
    // Every 1×128 tile gets fp8_max in its first column, so its scale is exactly 1.
    const int64_t tiles = (int64_t(row.size()) + 126) / 127;
    std::vector<float> x;
    for (int64_t t = 0; t < tiles; ++t) {
      x.push_back(max);
      for (int64_t k = t * 127; k < std::min<int64_t>(int64_t(row.size()), (t + 1) * 127); ++k) {
        x.push_back(row[size_t(k)]);
      }
    }
    Fp8Matrix q;
    fp8_quantize(x.data(), 1, int64_t(x.size()), {1, 128}, {format, true}, &q);
    for (float s : q.scales) ASSERT_EQ(s, 1.0f);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(int(q.codes[i]), int(fp8_encode(x[i], format)))
          << fp8_format_name(format) << " x = " << x[i];
    }
  }
}

// Codes are fp8_encode(x · fl(1/s)), multiplying by the reciprocal as GPU quantizers do, not
// fp8_encode(x / s): the two differ in the last float bit, which flips the code next to FP8
// rounding boundaries. These inputs are picked where it does.
TEST(Fp8Quantize, MultipliesByTheReciprocalScale) {
  for (Fp8Format format : kFormats) {
    const float amax = 300.7f * fp8_max(format) / 448.0f;
    const float s = amax / fp8_max(format), inv = 1.0f / s;
    std::vector<float> x = {amax};
    for (int code = 0; code < 0x7B; ++code) {
      const float mid =
          (fp8_decode(uint8_t(code), format) + fp8_decode(uint8_t(code + 1), format)) / 2;
      float v = std::nextafter(std::nextafter(mid * s, 0.0f), 0.0f);
      for (int k = 0; k < 5; ++k, v = std::nextafter(v, kInf)) {
        if (v <= amax && fp8_encode(v * inv, format) != fp8_encode(v / s, format)) x.push_back(v);
      }
    }
    ASSERT_GE(x.size(), 10u) << fp8_format_name(format) << ": too few distinguishing inputs";
    Fp8Matrix q;
    fp8_quantize(x.data(), 1, int64_t(x.size()), {1, int64_t(x.size())}, {format, false}, &q);
    ASSERT_EQ(q.scales[0], s);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(int(q.codes[i]), int(fp8_encode(x[i] * inv, format))) << "x = " << x[i];
    }
  }
}

TEST(Fp8Quantize, ZeroTilesGetScaleOne) {
  for (Fp8Format format : kFormats) {
    // Row 0's first tile all +0, row 1's second tile all −0; the rest random.
    auto x = random_matrix(2, 256, 7);
    for (int c = 0; c < 128; ++c) x[size_t(c)] = 0.0f;
    for (int c = 128; c < 256; ++c) x[size_t(256 + c)] = -0.0f;
    Fp8Matrix q;
    fp8_quantize(x.data(), 2, 256, {1, 128}, {format, false}, &q);
    EXPECT_EQ(q.scales[0], 1.0f);
    EXPECT_EQ(q.scales[3], 1.0f);
    EXPECT_NE(q.scales[1], 1.0f);
    for (int c = 0; c < 128; ++c) EXPECT_EQ(int(q.codes[size_t(c)]), 0x00);
    for (int c = 128; c < 256; ++c) EXPECT_EQ(int(q.codes[size_t(256 + c)]), 0x80);
    std::vector<float> deq(x.size());
    fp8_dequantize(q.view(), deq.data());
    EXPECT_TRUE(std::signbit(deq[256 + 200]));
    EXPECT_EQ(deq[256 + 200], 0.0f);

    // A whole zero matrix in 128×128 blocks.
    std::vector<float> zeros(size_t(130 * 129), 0.0f);
    fp8_quantize(zeros.data(), 130, 129, {128, 128}, {format, true}, &q);
    ASSERT_EQ(q.scales.size(), 4u);
    for (float s : q.scales) EXPECT_EQ(s, 1.0f);
    for (uint8_t code : q.codes) EXPECT_EQ(int(code), 0);
  }
}

// NaN and ±inf do not set the scale (they would zero or poison every other code of the tile):
// the scale comes from the finite values, NaN encodes as NaN and ±inf saturates to ±fp8_max.
TEST(Fp8Quantize, NonFiniteValuesDoNotSetTheScale) {
  for (Fp8Format format : kFormats) {
    auto x = random_matrix(1, 256, 9);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    x[4] = kInf;
    x[5] = -kInf;
    for (int c = 128; c < 256; ++c) x[size_t(c)] = c % 2 ? kInf : -std::nanf("");
    Fp8Matrix q;
    fp8_quantize(x.data(), 1, 256, {1, 128}, {format, false}, &q);
    float amax = 0;
    for (int c = 0; c < 128; ++c) {
      if (std::isfinite(x[size_t(c)])) amax = std::max(amax, std::fabs(x[size_t(c)]));
    }
    EXPECT_EQ(q.scales[0], amax / fp8_max(format));
    const int max_code = format == Fp8Format::kE4M3 ? 0x7E : 0x7B;
    EXPECT_EQ(int(q.codes[3]), 0x7F);
    EXPECT_EQ(int(q.codes[4]), max_code);
    EXPECT_EQ(int(q.codes[5]), 0x80 | max_code);
    const float inv = 1.0f / q.scales[0];
    for (int c = 6; c < 128; ++c) {
      EXPECT_EQ(q.codes[size_t(c)], fp8_encode(x[size_t(c)] * inv, format));
    }
    // A tile with no finite value at all: scale 1.
    EXPECT_EQ(q.scales[1], 1.0f);
    EXPECT_EQ(int(q.codes[129]), max_code);
    EXPECT_EQ(int(q.codes[130]), 0x7F);
    std::vector<float> deq(x.size());
    fp8_dequantize(q.view(), deq.data());
    EXPECT_TRUE(std::isnan(deq[3]));
    EXPECT_EQ(deq[4], fp8_max(format) * q.scales[0]);
  }
}

// Extreme tiles: amax in the float subnormals (the scale stops at FLT_MIN so that 1/scale stays
// finite) and amax = FLT_MAX (the scale stays finite too).
TEST(Fp8Quantize, ExtremeMagnitudesKeepFiniteScales) {
  for (Fp8Format format : kFormats) {
    for (bool pow2 : {false, true}) {
      const Fp8ScaleOptions options{format, pow2};
      std::vector<float> x = {1e-42f, -3e-43f, 0.0f, 7e-45f, FLT_MAX, -1e38f, 3e37f, 1.0f};
      Fp8Matrix q;
      fp8_quantize(x.data(), 2, 4, {1, 4}, options, &q);
      EXPECT_EQ(q.scales[0], FLT_MIN);
      EXPECT_TRUE(std::isfinite(q.scales[1]));
      if (!pow2) {
        EXPECT_EQ(int(q.codes[4]), format == Fp8Format::kE4M3 ? 0x7E : 0x7B);
      }
      check_against_bounds(x, q, options, std::string("extreme ") + fp8_format_name(format));
    }
  }
}

TEST(Fp8Quantize, TileScaleFormula) {
  const Fp8ScaleOptions e4m3{Fp8Format::kE4M3, false}, e4m3_pow2{Fp8Format::kE4M3, true};
  const Fp8ScaleOptions e5m2{Fp8Format::kE5M2, false}, e5m2_pow2{Fp8Format::kE5M2, true};
  EXPECT_EQ(fp8_tile_scale(448.0f, e4m3), 1.0f);
  EXPECT_EQ(fp8_tile_scale(224.0f, e4m3), 0.5f);
  EXPECT_EQ(fp8_tile_scale(100.0f, e4m3), 100.0f / 448.0f);
  EXPECT_EQ(fp8_tile_scale(57344.0f, e5m2), 1.0f);
  EXPECT_EQ(fp8_tile_scale(448.0f, e4m3_pow2), 1.0f);
  EXPECT_EQ(fp8_tile_scale(std::nextafter(448.0f, kInf), e4m3_pow2), 2.0f);
  EXPECT_EQ(fp8_tile_scale(447.0f, e4m3_pow2), 1.0f);
  EXPECT_EQ(fp8_tile_scale(224.0f, e4m3_pow2), 0.5f);
  EXPECT_EQ(fp8_tile_scale(225.0f, e4m3_pow2), 1.0f);
  EXPECT_EQ(fp8_tile_scale(1.0f, e5m2_pow2), std::ldexp(1.0f, -15));  // 2^-15.8 → 2^-15
  EXPECT_EQ(fp8_tile_scale(0.0f, e4m3), 1.0f);
  EXPECT_EQ(fp8_tile_scale(0.0f, e4m3_pow2), 1.0f);
  EXPECT_EQ(fp8_tile_scale(std::nanf(""), e4m3), 1.0f);
  EXPECT_EQ(fp8_tile_scale(kInf, e4m3), FLT_MAX / 448.0f);
  EXPECT_EQ(fp8_tile_scale(1e-42f, e4m3), FLT_MIN);
  EXPECT_EQ(fp8_tile_scale(1e-42f, e4m3_pow2), FLT_MIN);
}

// One outlier coarsens only its own tile: every other scale and code is unchanged.
TEST(Fp8Quantize, AnOutlierOnlyAffectsItsOwnTile) {
  for (Fp8Tile tile : kTiles) {
    auto x = random_matrix(200, 300, 11);
    Fp8Matrix before, after;
    const Fp8ScaleOptions options{};
    fp8_quantize(x.data(), 200, 300, tile, options, &before);
    const int64_t r = 150, c = 140;
    x[size_t(r * 300 + c)] = 1e9f;  // 60× the largest value random_matrix makes
    fp8_quantize(x.data(), 200, 300, tile, options, &after);
    const Fp8View view = after.view();
    const int64_t changed_tile = (r / tile.rows) * view.tile_cols() + c / tile.cols;
    for (int64_t t = 0; t < int64_t(after.scales.size()); ++t) {
      if (t == changed_tile) EXPECT_GT(after.scales[size_t(t)], before.scales[size_t(t)]);
      else EXPECT_EQ(after.scales[size_t(t)], before.scales[size_t(t)]);
    }
    for (int64_t i = 0; i < 200; ++i) {
      for (int64_t j = 0; j < 300; ++j) {
        if (i / tile.rows == r / tile.rows && j / tile.cols == c / tile.cols) continue;
        ASSERT_EQ(after.codes[size_t(i * 300 + j)], before.codes[size_t(i * 300 + j)]);
      }
    }
  }
}

TEST(Fp8Quantize, RowSliceOfOneRowTiles) {
  const auto x = random_matrix(10, 300, 13);
  Fp8Matrix q, part;
  fp8_quantize(x.data(), 10, 300, {1, 128}, {}, &q);
  const Fp8View slice = q.view().row_slice(3, 4);
  EXPECT_EQ(slice.rows, 4);
  EXPECT_EQ(slice.cols, 300);
  // The same as quantizing rows 3..6 alone.
  fp8_quantize(x.data() + 3 * 300, 4, 300, {1, 128}, {}, &part);
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 300; ++c) {
      ASSERT_EQ(slice.value(r, c), part.view().value(r, c));
      ASSERT_EQ(slice.value(r, c), q.view().value(3 + r, c));
    }
  }
  std::vector<float> from_slice(4 * 300), from_part(4 * 300);
  fp8_dequantize(slice, from_slice.data());
  fp8_dequantize(part.view(), from_part.data());
  EXPECT_EQ(from_slice, from_part);
  EXPECT_EQ(q.view().row_slice(10, 0).rows, 0);
  EXPECT_THROW(q.view().row_slice(8, 3), std::out_of_range);
  EXPECT_THROW(q.view().row_slice(-1, 2), std::out_of_range);
  Fp8Matrix blocks;
  fp8_quantize(x.data(), 10, 300, {128, 128}, {}, &blocks);
  EXPECT_THROW(blocks.view().row_slice(0, 1), std::invalid_argument);
}

// Double input is quantized as float(x); the error bound holds against float(x).
TEST(Fp8Quantize, DoubleInputIsQuantizedAsFloat) {
  std::mt19937_64 rng(17);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<double> x(size_t(129 * 131));
  for (auto& v : x) v = normal(rng);
  const std::vector<float> xf(x.begin(), x.end());
  for (Fp8Tile tile : kTiles) {
    for (Fp8Format format : kFormats) {
      const Fp8ScaleOptions options{format, false};
      Fp8Matrix from_double, from_float;
      fp8_quantize(x.data(), 129, 131, tile, options, &from_double);
      fp8_quantize(xf.data(), 129, 131, tile, options, &from_float);
      const std::string what = describe({129, 131}, tile, options);
      expect_same_matrix(from_float, from_double, what);
      fp8_quantize_transposed(x.data(), 129, 131, tile, options, &from_double);
      fp8_quantize_transposed(xf.data(), 129, 131, tile, options, &from_float);
      expect_same_matrix(from_float, from_double, what + " transposed");
      fp8_quantize(x.data(), 129, 131, tile, options, &from_double);
      check_against_bounds(xf, from_double, options, what + " double");
    }
  }
}

// Float dequantization is decode(code) · scale rounded once to float; double is exact.
TEST(Fp8Quantize, DequantizeIsCodeTimesScale) {
  const auto x = random_matrix(129, 200, 19);
  for (Fp8Tile tile : kTiles) {
    Fp8Matrix q;
    fp8_quantize(x.data(), 129, 200, tile, {Fp8Format::kE4M3, false}, &q);
    std::vector<float> deq(x.size());
    std::vector<double> deq_double(x.size());
    fp8_dequantize(q.view(), deq.data());
    fp8_dequantize(q.view(), deq_double.data());
    const Fp8View view = q.view();
    for (int64_t r = 0; r < 129; ++r) {
      for (int64_t c = 0; c < 200; ++c) {
        const size_t k = size_t(r * 200 + c);
        const float decoded = fp8_decode(q.codes[k], q.format);
        ASSERT_EQ(deq[k], decoded * view.scale_at(r, c));
        ASSERT_EQ(deq[k], view.value(r, c));
        ASSERT_EQ(deq_double[k], double(decoded) * double(view.scale_at(r, c)));
      }
    }
  }
}

TEST(Fp8Quantize, BitIdenticalForOneAndTwoThreads) {
  const auto x = random_matrix(300, 1100, 23);
  const int saved = omp_get_max_threads();
  for (Fp8Tile tile : kTiles) {
    Fp8Matrix one[2], two[2];
    omp_set_num_threads(1);
    fp8_quantize(x.data(), 300, 1100, tile, {}, &one[0]);
    fp8_quantize_transposed(x.data(), 300, 1100, tile, {}, &one[1]);
    omp_set_num_threads(2);
    fp8_quantize(x.data(), 300, 1100, tile, {}, &two[0]);
    fp8_quantize_transposed(x.data(), 300, 1100, tile, {}, &two[1]);
    expect_same_matrix(one[0], two[0], "quantize");
    expect_same_matrix(one[1], two[1], "quantize_transposed");
  }
  omp_set_num_threads(saved);
}

TEST(Fp8Quantize, EmptyMatricesAndBadTiles) {
  Fp8Matrix q;
  fp8_quantize<float>(nullptr, 0, 300, {1, 128}, {}, &q);
  EXPECT_EQ(q.rows, 0);
  EXPECT_TRUE(q.codes.empty());
  EXPECT_TRUE(q.scales.empty());
  fp8_quantize_transposed<float>(nullptr, 5, 0, {1, 128}, {}, &q);
  EXPECT_EQ(q.rows, 0);
  EXPECT_EQ(q.cols, 5);
  const std::vector<float> x(8, 1.0f);
  EXPECT_THROW(fp8_quantize(x.data(), 2, 4, {0, 128}, {}, &q), std::invalid_argument);
  EXPECT_THROW(fp8_quantize(x.data(), 2, 4, {1, -1}, {}, &q), std::invalid_argument);
  EXPECT_THROW(fp8_quantize(x.data(), -2, 4, {1, 128}, {}, &q), std::invalid_argument);
  // Buffers are reused: a smaller matrix after a larger one has its own sizes.
  fp8_quantize(x.data(), 2, 4, {1, 128}, {}, &q);
  EXPECT_EQ(q.codes.size(), 8u);
  EXPECT_EQ(q.scales.size(), 2u);
  EXPECT_EQ(q.bytes(), 8 + 4 * 2);
}

}  // namespace
}  // namespace baleine::kernels
