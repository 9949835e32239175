// fp8_gemm_tn (kernels/fp8_gemm.h):
// - exact mode against the float64 product of the dequantized operands, and (with the other
//   FP32 mode) bit for bit against its definition written as a scalar loop;
// - the FP8 product against the float64 product of the unquantized inputs;
// - C += and double output;
// - the limited accumulator on hand-computed sums, and DeepSeek-V3's accumulation experiment;
// - the three products of a Linear;
// - thread-count determinism and argument errors.
// Operands are built from codes and scales directly (random codes cover every finite code), or
// quantized here with fp8_encode and a per-tile amax, so these tests do not depend on
// fp8_quantize.
#include "kernels/fp8_gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

constexpr Fp8Format kE4M3 = Fp8Format::kE4M3, kE5M2 = Fp8Format::kE5M2;
constexpr Fp8Tile kRowTile{1, 128}, kBlockTile{128, 128};
constexpr double kFp32UnitRoundoff = 0x1p-24;  // round to nearest

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

Fp8Matrix empty_operand(int64_t rows, int64_t cols, Fp8Tile tile, Fp8Format format) {
  Fp8Matrix q;
  q.rows = rows;
  q.cols = cols;
  q.tile = tile;
  q.format = format;
  q.codes.assign(size_t(rows * cols), 0);
  q.scales.assign(size_t(ceil_div(rows, tile.rows) * ceil_div(cols, tile.cols)), 1.0f);
  return q;
}

// Every finite code equally likely (NaN and E5M2's infinities excluded), so a few thousand
// codes cover all of them, subnormals and both zeros included; scales log-uniform in [2⁻⁴, 2⁴].
Fp8Matrix random_operand(int64_t rows, int64_t cols, Fp8Tile tile, Fp8Format format,
                         uint64_t seed) {
  Fp8Matrix q = empty_operand(rows, cols, tile, format);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& code : q.codes) {
    do code = uint8_t(byte(rng));
    while (!std::isfinite(fp8_decode(code, format)));
  }
  std::uniform_real_distribution<double> exponent(-4.0, 4.0);
  for (float& scale : q.scales) scale = float(std::exp2(exponent(rng)));
  return q;
}

// Whether every finite code of q's format occurs in q.
bool covers_every_finite_code(const Fp8Matrix& q) {
  std::array<bool, 256> seen{};
  for (uint8_t code : q.codes) seen[code] = true;
  for (int code = 0; code < 256; ++code) {
    if (!seen[size_t(code)] && std::isfinite(fp8_decode(uint8_t(code), q.format))) return false;
  }
  return true;
}

// The same operand with every sign cleared: the product of two such is Σ_k |a|·|b|, the
// quantity a rounding-error bound is proportional to.
Fp8Matrix magnitudes(Fp8Matrix q) {
  for (uint8_t& code : q.codes) code &= 0x7F;
  return q;
}

// An operand holding exactly these values (each must be an FP8 value), scales 1.
Fp8Matrix exact_operand(const std::vector<float>& values, int64_t rows, int64_t cols,
                        Fp8Tile tile) {
  Fp8Matrix q = empty_operand(rows, cols, tile, kE4M3);
  for (size_t i = 0; i < values.size(); ++i) {
    q.codes[i] = fp8_encode(values[i], kE4M3);
    EXPECT_EQ(fp8_decode(q.codes[i], kE4M3), values[i]) << "not an E4M3 value";
  }
  return q;
}

// x [rows, cols] quantized to E4M3 in tiles of `tile` the DeepSeek-V3 way: scale = tile amax /
// 448, code = encode(x · (1 / scale)) (the reciprocal, as GPU quantizers multiply).
Fp8Matrix quantize_here(const std::vector<double>& x, int64_t rows, int64_t cols, Fp8Tile tile) {
  Fp8Matrix q = empty_operand(rows, cols, tile, kE4M3);
  const int64_t tile_cols = ceil_div(cols, tile.cols);
  std::vector<float> amax(q.scales.size(), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float& tile_amax = amax[size_t((r / tile.rows) * tile_cols + c / tile.cols)];
      tile_amax = std::max(tile_amax, std::fabs(float(x[size_t(r * cols + c)])));
    }
  for (size_t t = 0; t < amax.size(); ++t) {
    q.scales[t] = amax[t] > 0.0f ? amax[t] / fp8_max(kE4M3) : 1.0f;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = size_t(r * cols + c);
      const float scale = q.scales[size_t((r / tile.rows) * tile_cols + c / tile.cols)];
      q.codes[i] = fp8_encode(float(x[i]) * (1.0f / scale), kE4M3);
    }
  return q;
}

std::vector<double> transpose(const std::vector<double>& x, int64_t rows, int64_t cols) {
  std::vector<double> t(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[size_t(c * rows + r)] = x[size_t(r * cols + c)];
  return t;
}

// C [M, N] = A [M, K] · B [N, K]ᵀ in long double.
std::vector<double> product_tn(const std::vector<double>& a, const std::vector<double>& b,
                               int64_t M, int64_t N, int64_t K) {
  std::vector<double> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      long double sum = 0;
      for (int64_t k = 0; k < K; ++k)
        sum += (long double)a[size_t(m * K + k)] * b[size_t(n * K + k)];
      c[size_t(m * N + n)] = double(sum);
    }
  return c;
}

// ‖c − ref‖ / ‖ref‖ (Frobenius).
template <typename T>
double relative_error(const std::vector<T>& c, const std::vector<double>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(c[i]) - ref[i]) * (double(c[i]) - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff / norm);
}

// C ← A·Bᵀ with C first filled with NaN (overwriting must not read it).
template <typename T>
std::vector<T> fp8_product(const Fp8Matrix& a, const Fp8Matrix& b,
                           const Fp8Accumulation& accumulation = {}) {
  std::vector<T> c(size_t(a.rows * b.rows), std::numeric_limits<T>::quiet_NaN());
  fp8_gemm_tn<T>(a.view(), b.view(), c.data(), false, accumulation);
  return c;
}

std::vector<double> reference_product(const Fp8Matrix& a, const Fp8Matrix& b) {
  std::vector<double> c(size_t(a.rows * b.rows));
  fp8_gemm_tn_reference(a.view(), b.view(), c.data());
  return c;
}

TEST(Fp8Gemm, ExactModeMatchesTheDequantizedProduct) {
  // Off the 128 grid everywhere: K = 300 = 128 + 128 + 44 (a ragged last tile), and M and N
  // end in partial tiles and blocks.
  const int64_t M = 37, N = 150, K = 300, tiles = ceil_div(K, 128);
  struct Case {
    Fp8Tile b_tile;
    Fp8Format b_format;
    const char* name;
  };
  for (const Case& c :
       {Case{kRowTile, kE4M3, "B e4m3 1x128"}, Case{kBlockTile, kE4M3, "B e4m3 128x128"},
        Case{kBlockTile, kE5M2, "B e5m2 128x128"}}) {
    const Fp8Matrix a = random_operand(M, K, kRowTile, kE4M3, 1);
    const Fp8Matrix b = random_operand(N, K, c.b_tile, c.b_format, 2);
    ASSERT_TRUE(covers_every_finite_code(a) && covers_every_finite_code(b)) << c.name;
    const auto out = fp8_product<float>(a, b);
    const auto ref = reference_product(a, b);
    const auto sum_of_magnitudes = reference_product(magnitudes(a), magnitudes(b));
    // Elementwise rounding bound (Higham, "Accuracy and Stability of Numerical Algorithms",
    // §4.2, γ_n = n·u / (1 − n·u)): FP8 products are exact in FP32; a tile's partial sums ≤ 128
    // terms from zero (≤ 127 roundings), sa·sb rounds once, and each promotion is one rounding
    // (≤ `tiles` of them along any term's path). So |C − ref| ≤ γ_{128 + tiles}·Σ|a|·|b|, with
    // the reference's own double rounding (~K·2⁻⁵³) far below. A wrong code, scale or index
    // is an O(1) relative error.
    const double n = 128 + tiles;
    const double gamma = n * kFp32UnitRoundoff / (1 - n * kFp32UnitRoundoff);
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_LE(std::fabs(out[i] - ref[i]), gamma * sum_of_magnitudes[i])
          << c.name << " at (" << i / N << ", " << i % N << ")";
    }
    const double error = relative_error(out, ref);
    std::printf("[fp8_gemm] exact mode, %s, M=%lld N=%lld K=%lld: ||C - ref|| / ||ref|| = %.3g\n",
                c.name, (long long)M, (long long)N, (long long)K, error);
    EXPECT_LE(error, 1e-6) << c.name;
  }
}

// The FP32 modes as kernels/fp8_gemm.h and kernels/cpu/fp8_gemm.cpp define them, one element
// at a time. Promoting every K tile (the recipe): an FP32 partial of the unscaled products, k
// ascending from zero, then acc ← fma(partial, sa·sb, acc). Promoting every j tiles: each
// product scaled by its tile's sa·sb and rounded to FP32, summed in FP32, then acc += partial.
std::vector<float> fp32_modes_by_hand(const Fp8Matrix& a, const Fp8Matrix& b,
                                      int64_t promote_every) {
  const Fp8View va = a.view(), vb = b.view();
  const int64_t M = a.rows, N = b.rows, K = a.cols, tile = a.tile.cols;
  std::vector<float> c(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0;
      for (int64_t k0 = 0; k0 < K; k0 += promote_every) {
        float partial = 0;
        for (int64_t k = k0; k < std::min(K, k0 + promote_every); ++k) {
          const float product = fp8_decode(a.codes[size_t(m * K + k)], a.format) *
                                fp8_decode(b.codes[size_t(n * K + k)], b.format);
          if (promote_every == tile) {
            partial += product;  // exact product: a fused add would round the same
          } else {
            // volatile: rounded to FP32 before the add (the compiler may not fuse them).
            const volatile float scaled = product * (va.scale_at(m, k) * vb.scale_at(n, k));
            partial += scaled;
          }
        }
        if (promote_every == tile) {
          acc = std::fma(partial, va.scale_at(m, k0) * vb.scale_at(n, k0), acc);
        } else {
          acc += partial;
        }
      }
      c[size_t(m * N + n)] = acc;
    }
  return c;
}

TEST(Fp8Gemm, Fp32ModesAreTheirDefinitionBitForBit) {
  // The fast path (decoded panels through kernels::gemm<float>, then a promotion pass) must
  // round exactly where the recipe does, so a GPU kernel can later be compared bit for bit;
  // and the scalar path's FP32 mode (mantissa_bits 23, promotion every 2 tiles) likewise.
  // M < N and M > N: the fast path shares the threads out along the larger side.
  for (auto [M, N] : {std::pair<int64_t, int64_t>{13, 140}, {140, 13}}) {
    const Fp8Matrix a = random_operand(M, 300, kRowTile, kE4M3, 3);
    for (Fp8Tile b_tile : {kRowTile, kBlockTile}) {
      const Fp8Matrix b = random_operand(N, 300, b_tile, kE4M3, 4);
      testing::expect_bitwise_equal("exact mode", fp8_product<float>(a, b),
                                    fp32_modes_by_hand(a, b, 128));
      testing::expect_bitwise_equal("FP32, promoted every 256", fp8_product<float>(a, b, {23, 256}),
                                    fp32_modes_by_hand(a, b, 256));
    }
  }
}

TEST(Fp8Gemm, AgreesWithTheUnquantizedProduct) {
  // x [M, K] in 1x128 tiles times w [N, K] in 128x128 blocks, against x·wᵀ in double from
  // the original values. E4M3 keeps 3 mantissa bits, so each quantized value is within 2⁻⁴
  // relative of the original (round to nearest; Gaussian values sit far above the subnormals
  // once a tile's amax maps to 448), and each product within about 2⁻³. With random signs these
  // errors are independent, so ‖C − ref‖/‖ref‖ is their RMS, ≈ 0.04; the bound 2⁻⁴ leaves room,
  // while a wrong scale or tile is an O(1) error.
  const int64_t M = 48, N = 200, K = 333;
  const auto x = testing::random_vector(size_t(M * K), 5);
  const auto w = testing::random_vector(size_t(N * K), 6);
  const auto out =
      fp8_product<float>(quantize_here(x, M, K, kRowTile), quantize_here(w, N, K, kBlockTile));
  const double error = relative_error(out, product_tn(x, w, M, N, K));
  std::printf(
      "[fp8_gemm] quantized vs unquantized inputs, M=%lld N=%lld K=%lld: "
      "||C - ref|| / ||ref|| = %.3g\n",
      (long long)M, (long long)N, (long long)K, error);
  EXPECT_LE(error, 0x1p-4);
}

TEST(Fp8Gemm, AccumulateAddsToCAndDoubleOutputHoldsTheSameSums) {
  // The sum over K is FP32 whatever T is: C = acc, or C + acc rounded once to T. So every
  // variant follows from the overwritten float result bit for bit.
  const Fp8Matrix a = random_operand(21, 260, kRowTile, kE4M3, 7);
  const Fp8Matrix b = random_operand(33, 260, kBlockTile, kE4M3, 8);
  for (const Fp8Accumulation accumulation : {Fp8Accumulation{}, Fp8Accumulation{14, 128}}) {
    const auto overwritten = fp8_product<float>(a, b, accumulation);
    for (float v : overwritten) ASSERT_TRUE(std::isfinite(v));

    std::vector<float> c32 = testing::to_float(testing::random_vector(overwritten.size(), 9));
    std::vector<float> expected32(c32.size());
    for (size_t i = 0; i < c32.size(); ++i) expected32[i] = c32[i] + overwritten[i];
    fp8_gemm_tn<float>(a.view(), b.view(), c32.data(), true, accumulation);
    testing::expect_bitwise_equal("float, accumulate", c32, expected32);

    const auto overwritten64 = fp8_product<double>(a, b, accumulation);
    testing::expect_bitwise_equal("double, overwrite", overwritten64,
                                  std::vector<double>(overwritten.begin(), overwritten.end()));
    std::vector<double> c64 = testing::random_vector(overwritten.size(), 10);
    std::vector<double> expected64(c64.size());
    for (size_t i = 0; i < c64.size(); ++i) expected64[i] = c64[i] + double(overwritten[i]);
    fp8_gemm_tn<double>(a.view(), b.view(), c64.data(), true, accumulation);
    testing::expect_bitwise_equal("double, accumulate", c64, expected64);
  }
}

TEST(Fp8Gemm, EmptyKGivesZerosOrLeavesCAlone) {
  const Fp8Matrix a = empty_operand(3, 0, kRowTile, kE4M3);
  const Fp8Matrix b = empty_operand(4, 0, kBlockTile, kE4M3);
  const auto zeros = fp8_product<float>(a, b);
  for (float v : zeros) EXPECT_EQ(v, 0.0f);
  std::vector<double> c(12, 2.5);
  fp8_gemm_tn<double>(a.view(), b.view(), c.data(), true);
  for (double v : c) EXPECT_EQ(v, 2.5);
}

// One row of `values_a` times one row of `values_b` (K = their length, K tile `tile`), scales 1.
float dot_with(const std::vector<float>& values_a, const std::vector<float>& values_b, int64_t tile,
               const Fp8Accumulation& accumulation) {
  const int64_t K = int64_t(values_a.size());
  const Fp8Matrix a = exact_operand(values_a, 1, K, {1, tile});
  const Fp8Matrix b = exact_operand(values_b, 1, K, {1, tile});
  return fp8_product<float>(a, b, accumulation)[0];
}

TEST(Fp8Gemm, LimitedAccumulatorTruncatesTowardZeroAfterEveryAddition) {
  // Hand-computed sums with 3 fraction bits (values 1.xxx · 2^e), K tile 16.
  // 8 + 0.75 = 1.00011b · 2³: truncated to 3 bits it is 8 (rounding to nearest would give 9),
  // to 4 bits 8.5, to 5 bits exact.
  std::vector<float> ones(16, 1.0f), head(16, 0.0f);
  for (int k = 0; k < 8; ++k) head[size_t(k)] = 1.0f;
  head[8] = 0.75f;
  for (auto [bits, expected] : {std::pair{3, 8.0f}, {4, 8.5f}, {5, 8.75f}, {23, 8.75f}}) {
    EXPECT_EQ(dot_with(head, ones, 16, {bits, 0}), expected) << bits << " bits";
    // Toward zero, not toward −∞: the negated sum has the same magnitude.
    std::vector<float> negated(ones.size(), -1.0f);
    EXPECT_EQ(dot_with(head, negated, 16, {bits, 0}), -expected) << bits << " bits";
  }

  // 16 ones then 48 halves. With 3 bits, 16 + 0.5 = 1.00001b · 2⁴ truncates back to 16, so
  // once the sum reaches 16 every half is lost. Promoting every tile restarts the accumulator:
  // 16 halves sum exactly (0.5 … 8 all fit), and FP32 adds the four partials exactly.
  std::vector<float> values(64, 0.5f), unit(64, 1.0f);
  for (int k = 0; k < 16; ++k) values[size_t(k)] = 1.0f;
  EXPECT_EQ(dot_with(values, unit, 16, {3, 0}), 16.0f) << "never promoted";
  EXPECT_EQ(dot_with(values, unit, 16, {3, 16}), 40.0f) << "promoted every tile";
  // Every 2 tiles: [16 ones, 16 halves] → 16, then 32 halves → 8 (8.5 truncates to 8).
  EXPECT_EQ(dot_with(values, unit, 16, {3, 32}), 24.0f) << "promoted every 2 tiles";
  EXPECT_EQ(dot_with(values, unit, 16, {23, 0}), 40.0f) << "FP32 throughout";

  // The exact sum, not FP32's rounded one, is truncated: 32·32 − 2⁻⁹·2⁻⁹ = 1024 − 2⁻¹⁸ rounds
  // to 1024 in FP32 (half an ulp below 1024 is 2⁻¹⁵), but lies below 1024, so with 3 bits it
  // truncates to 1.111b · 2⁹ = 960.
  const float tiny = 0x1p-9f;  // the smallest E4M3 subnormal
  EXPECT_EQ(dot_with({32.0f, tiny}, {32.0f, -tiny}, 2, {3, 0}), 960.0f);
  EXPECT_EQ(dot_with({32.0f, tiny}, {32.0f, -tiny}, 2, {23, 0}), 1024.0f);
}

TEST(Fp8Gemm, EveryModeStaysWithinItsRoundingBound) {
  // Elementwise |C − ref| ≤ γ_n(u)·Σ|a|·|b| (Higham §3.1, γ_n = n·u / (1 − n·u)) for each
  // accumulation, with random scales, so a product scaled by the wrong tile's scale fails.
  // One product's path has at most `interval` accumulator additions, one rounding of sa·sb,
  // one of the scaled product (or of the promotion's fused multiply-add) and ≤ K / interval
  // promotions. Each loses < u relative: 2⁻²⁴ for FP32, 2⁻ᵖ when truncating to p bits (the
  // discarded bits are below 2⁻ᵖ of the leading one), which also covers the FP32 roundings.
  const int64_t M = 9, N = 140, K = 300;
  const Fp8Matrix a = random_operand(M, K, kRowTile, kE4M3, 25);
  const Fp8Matrix b = random_operand(N, K, kBlockTile, kE4M3, 26);
  const auto ref = reference_product(a, b);
  const auto sum_of_magnitudes = reference_product(magnitudes(a), magnitudes(b));
  for (int bits : {23, 14})
    for (int64_t promote_every : {0, 128, 256}) {
      const int64_t interval = promote_every == 0 ? K : promote_every;
      const double n = double(interval + 2 + ceil_div(K, interval));
      const double u = bits == 23 ? kFp32UnitRoundoff : std::ldexp(1.0, -bits);
      const double gamma = n * u / (1 - n * u);
      const auto out = fp8_product<float>(a, b, {bits, promote_every});
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_LE(std::fabs(out[i] - ref[i]), gamma * sum_of_magnitudes[i])
            << bits << " bits, promote_every " << promote_every << ", at (" << i / N << ", "
            << i % N << ")";
      }
    }
}

TEST(Fp8Gemm, PromotionBoundsTheLimitedAccumulatorsError) {
  // DeepSeek-V3 report §3.3.2: with ~14 bits kept by the tensor cores' accumulator, a K = 4096
  // GEMM without promotion reached a maximum relative error of nearly 2%; promoting to FP32
  // every 128 products (4 WGMMAs) fixes it. Here: sign-balanced random codes (every finite
  // E4M3 code equally likely), random per-tile scales, M = N = 64.
  const int64_t M = 64, N = 64, K = 4096;
  const Fp8Matrix a = random_operand(M, K, kRowTile, kE4M3, 11);
  const Fp8Matrix b = random_operand(N, K, kBlockTile, kE4M3, 12);
  const auto ref = reference_product(a, b);
  const double never = relative_error(fp8_product<float>(a, b, {14, 0}), ref);
  const double every_128 = relative_error(fp8_product<float>(a, b, {14, 128}), ref);
  const double exact = relative_error(fp8_product<float>(a, b), ref);
  std::printf(
      "[fp8_gemm] K=%lld, ||C - ref|| / ||ref||: 14 bits never promoted %.3g, "
      "14 bits promoted every 128 %.3g, exact (FP32 every 128) %.3g\n",
      (long long)K, never, every_128, exact);
  // Measured (seeds 11, 12): 0.057, 0.0012 and 1.7e-7. Truncation shrinks the partial by about
  // 2⁻¹⁵ per addition, so without promotion the first products lose ~K·2⁻¹⁵ ≈ 12% and the norm
  // a few percent; promotion every 128 limits that to ~128·2⁻¹⁵. The model is coarser than
  // the report's 2% maximum (a different input distribution and a cruder accumulator), so
  // only the ordering is asserted, with the factor of 2 asked for, plus that the limited
  // accumulator does lose precision and exact mode stays at FP32 rounding.
  EXPECT_GE(never, 0.01);
  EXPECT_LE(2 * every_128, never);
  EXPECT_LE(2 * exact, every_128);
  EXPECT_LE(exact, 1e-6);
}

TEST(Fp8Gemm, LinearProductsMatchTheirDefinitions) {
  // A Linear y = x·Wᵀ, x [tokens, in], W [out, in], dy [tokens, out], as kernels/fp8_gemm.h
  // lays out its three GEMMs; every K spans two tiles, the last one ragged. Each is compared
  // with its definition in double on the unquantized values; the bound is the quantization
  // one of AgreesWithTheUnquantizedProduct.
  const int64_t tokens = 200, in = 150, out = 170;
  const auto x = testing::random_vector(size_t(tokens * in), 13);
  const auto w = testing::random_vector(size_t(out * in), 14);
  const auto dy = testing::random_vector(size_t(tokens * out), 15);
  const auto xt = transpose(x, tokens, in), wt = transpose(w, out, in);
  const auto dyt = transpose(dy, tokens, out);

  // Fprop: y [tokens, out] = x (1x128) · W (128x128 blocks).
  const auto y = fp8_product<float>(quantize_here(x, tokens, in, kRowTile),
                                    quantize_here(w, out, in, kBlockTile));
  // Dgrad: dx [tokens, in] = dy (1x128) · (Wᵀ [in, out] in 128x128 blocks)ᵀ = dy·W.
  const auto dx = fp8_product<float>(quantize_here(dy, tokens, out, kRowTile),
                                     quantize_here(wt, in, out, kBlockTile));
  // Wgrad: dW [out, in] = dyᵀ [out, tokens] · xᵀ [in, tokens]ᵀ, both in 1x128 tiles along
  // tokens (128x1 tiles of dy and x, stored transposed).
  const auto dw = fp8_product<float>(quantize_here(dyt, out, tokens, kRowTile),
                                     quantize_here(xt, in, tokens, kRowTile));

  const double fprop = relative_error(y, product_tn(x, w, tokens, out, in));
  const double dgrad = relative_error(dx, product_tn(dy, wt, tokens, in, out));
  const double wgrad = relative_error(dw, product_tn(dyt, xt, out, in, tokens));
  std::printf("[fp8_gemm] Linear, ||C - ref|| / ||ref||: Fprop %.3g, Dgrad %.3g, Wgrad %.3g\n",
              fprop, dgrad, wgrad);
  EXPECT_LE(fprop, 0x1p-4);
  EXPECT_LE(dgrad, 0x1p-4);
  EXPECT_LE(wgrad, 0x1p-4);
}

TEST(Fp8Gemm, BitIdenticalForOneAndTwoThreads) {
  // Large enough to go parallel; M > N and M < N, since the fast path shares the threads out
  // along the larger side.
  const int saved = omp_get_max_threads();
  for (auto [M, N] : {std::pair<int64_t, int64_t>{260, 130}, {130, 260}}) {
    const Fp8Matrix a = random_operand(M, 300, kRowTile, kE4M3, 16);
    const Fp8Matrix b = random_operand(N, 300, kBlockTile, kE4M3, 17);
    for (const Fp8Accumulation accumulation :
         {Fp8Accumulation{}, Fp8Accumulation{14, 128}, Fp8Accumulation{14, 0}}) {
      omp_set_num_threads(1);
      const auto one = fp8_product<float>(a, b, accumulation);
      omp_set_num_threads(2);
      const auto two = fp8_product<float>(a, b, accumulation);
      testing::expect_bitwise_equal("1 vs 2 threads, M " + std::to_string(M) + ", " +
                                        std::to_string(accumulation.mantissa_bits) + " bits",
                                    one, two);
    }
  }
  omp_set_num_threads(saved);
}

// Runs fp8_gemm_tn and returns the std::invalid_argument's message ("" if none was thrown).
std::string error_of(const Fp8Matrix& a, const Fp8Matrix& b,
                     const Fp8Accumulation& accumulation = {}) {
  std::vector<float> c(size_t(a.rows * b.rows));
  try {
    fp8_gemm_tn<float>(a.view(), b.view(), c.data(), false, accumulation);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Fp8Gemm, RejectsInconsistentOperands) {
  const Fp8Matrix a = random_operand(4, 256, kRowTile, kE4M3, 18);
  const Fp8Matrix b = random_operand(5, 256, kBlockTile, kE4M3, 19);
  const auto expect_error = [](const std::string& message, const std::string& part) {
    EXPECT_NE(message.find(part), std::string::npos) << "message: \"" << message << "\"";
  };
  expect_error(error_of(a, random_operand(5, 200, kBlockTile, kE4M3, 20)), "same K");
  expect_error(error_of(a, random_operand(5, 200, kBlockTile, kE4M3, 20)),
               "A [4, 256] in 1x128 tiles, B [5, 200] in 128x128 tiles");
  expect_error(error_of(a, random_operand(5, 256, {1, 64}, kE4M3, 21)), "same K tile");
  expect_error(error_of(random_operand(4, 256, {2, 128}, kE4M3, 22), b), "one row high");
  expect_error(error_of(a, random_operand(5, 256, {64, 128}, kE4M3, 23)), "square");
  expect_error(error_of(a, b, {0, 128}), "mantissa_bits");
  expect_error(error_of(a, b, {24, 128}), "mantissa_bits");
  expect_error(error_of(a, b, {14, 100}), "promote_every");
  expect_error(error_of(a, b, {14, -128}), "promote_every");
  EXPECT_EQ(error_of(a, b, {14, 256}), "");
  std::vector<double> c(20);
  EXPECT_THROW(
      fp8_gemm_tn_reference(a.view(), random_operand(5, 200, kRowTile, kE4M3, 24).view(), c.data()),
      std::invalid_argument);
}

}  // namespace
}  // namespace baleine::kernels
