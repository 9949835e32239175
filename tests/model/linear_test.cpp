// The Linears' three GEMMs in each precision (trainer/model/linear.h) against float64
// references of the same products:
//  - fp32 is the kernels' own result, bit for bit;
//  - bf16 equals the float64 product of the BF16-rounded operands up to FP32 summation
//    (relative 1e-6), and the unrounded product to BF16's 2^-9 relative rounding;
//  - fp8 equals the float64 product of the operands as quantized (dequantized codes·scales)
//    up to FP32 summation, and the unquantized product within E4M3's quantization error
//    (3 mantissa bits: ≤ 2^-4 relative per operand, so ~6% per element at worst and ~3% in
//    norm over random data; bound 5%).
// Plus the saved-input cache: its bytes per format, and storing in row pieces = storing whole.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"
#include "tests/gradcheck.h"
#include "trainer/model/linear.h"

namespace baleine::model {
namespace {

namespace k = baleine::kernels;
using baleine::testing::random_vector;
using baleine::testing::to_float;

constexpr int64_t M = 150, K = 200, N = 136;  // not multiples of the 128 tile

LinearFormat format_of(LinearPrecision p) {
  LinearFormat f;
  f.precision = p;
  return f;
}

// ‖got − want‖ / ‖want‖
double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// C[m,n] = Σ_k a[m,k]·b[n,k] in double ("TN").
std::vector<double> product_tn(const std::vector<double>& a, const std::vector<double>& b,
                               int64_t m, int64_t n, int64_t kk) {
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < kk; ++t) s += a[i * kk + t] * b[j * kk + t];
      c[i * n + j] = s;
    }
  }
  return c;
}

std::vector<double> transpose(const std::vector<double>& x, int64_t rows, int64_t cols) {
  std::vector<double> t(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = x[r * cols + c];
  }
  return t;
}

std::vector<double> bf16_values(const std::vector<float>& x) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = k::bf16_round(x[i]);
  return out;
}

// x quantized in `tile`s and dequantized: the values an FP8 GEMM multiplies.
std::vector<double> fp8_values(const std::vector<float>& x, int64_t rows, int64_t cols,
                               k::Fp8Tile tile) {
  k::Fp8Matrix q;
  k::fp8_quantize(x.data(), rows, cols, tile, {}, &q);
  std::vector<float> back(x.size());
  k::fp8_dequantize(q.view(), back.data());
  return std::vector<double>(back.begin(), back.end());
}

struct Operands {
  // Random data with a few large entries, so tiles get different scales.
  std::vector<float> x = to_float(random_vector(M * K, 1)), w = to_float(random_vector(N * K, 2)),
                     dy = to_float(random_vector(M * N, 3));
  Operands() {
    for (size_t i = 0; i < x.size(); i += 97) x[i] *= 20;
    for (size_t i = 0; i < dy.size(); i += 89) dy[i] *= 20;
  }
  std::vector<double> xd() const { return {x.begin(), x.end()}; }
  std::vector<double> wd() const { return {w.begin(), w.end()}; }
  std::vector<double> dyd() const { return {dy.begin(), dy.end()}; }
};

struct Results {
  std::vector<float> y, dx, dw;
};

Results run_linear(const LinearFormat& f, const Operands& o) {
  LinearInput<float> cache;
  cache.store(o.x.data(), M, K, f);
  Results r{std::vector<float>(M * N), std::vector<float>(M * K),
            std::vector<float>(N * K, 0.0f)};
  linear_fprop(f, cache.view(), o.w.data(), r.y.data(), M, K, N);
  linear_dgrad(f, o.dy.data(), o.w.data(), r.dx.data(), M, K, N, false);
  linear_wgrad(f, o.dy.data(), cache.view(), r.dw.data(), M, K, N);
  return r;
}

TEST(LinearPrecision, Fp32IsTheKernelsBitForBit) {
  const Operands o;
  const Results r = run_linear(format_of(LinearPrecision::kFp32), o);
  std::vector<float> y(M * N), dx(M * K), dw(N * K, 0.0f);
  k::linear_forward(o.x.data(), o.w.data(), y.data(), M, K, N);
  k::linear_backward_input(o.dy.data(), o.w.data(), dx.data(), M, K, N);
  k::linear_backward_weight(o.dy.data(), o.x.data(), dw.data(), M, K, N);
  EXPECT_EQ(r.y, y);
  EXPECT_EQ(r.dx, dx);
  EXPECT_EQ(r.dw, dw);
}

TEST(LinearPrecision, Bf16MultipliesRoundedOperandsInFp32) {
  const Operands o;
  const Results r = run_linear(format_of(LinearPrecision::kBf16), o);
  const auto x = bf16_values(o.x), w = bf16_values(o.w), dy = bf16_values(o.dy);
  const auto wt = transpose(w, N, K), dyt = transpose(dy, M, N), xt = transpose(x, M, K);
  EXPECT_LT(relative_error(r.y, product_tn(x, w, M, N, K)), 1e-6);
  EXPECT_LT(relative_error(r.dx, product_tn(dy, wt, M, K, N)), 1e-6);
  EXPECT_LT(relative_error(r.dw, product_tn(dyt, xt, N, K, M)), 1e-6);
  // ... and that is BF16, not FP32: a few 2^-9 from the exact product, not 1e-7.
  const double e = relative_error(r.y, product_tn(o.xd(), o.wd(), M, N, K));
  EXPECT_GT(e, 1e-4);
  EXPECT_LT(e, 1e-2);
}

TEST(LinearPrecision, Fp8MultipliesTheQuantizedOperandsInFp32) {
  const Operands o;
  LinearFormat f = format_of(LinearPrecision::kFp8);
  const Results r = run_linear(f, o);
  const int64_t t = f.tile;
  // Fprop: x in 1×128 tiles, W in 128×128 blocks.
  const auto x = fp8_values(o.x, M, K, {1, t}), w = fp8_values(o.w, N, K, {t, t});
  EXPECT_LT(relative_error(r.y, product_tn(x, w, M, N, K)), 1e-6);
  // Dgrad: dy in 1×128 tiles, W (the same blocks) transposed.
  const auto dy = fp8_values(o.dy, M, N, {1, t});
  EXPECT_LT(relative_error(r.dx, product_tn(dy, transpose(w, N, K), M, K, N)), 1e-6);
  // Wgrad: dy and the cached x (as quantized for Fprop) in 128×1 tiles along the tokens.
  std::vector<float> xf(x.begin(), x.end());
  const auto dyt = transpose(fp8_values(o.dy, M, N, {t, 1}), M, N);
  const auto xt = transpose(fp8_values(xf, M, K, {t, 1}), M, K);
  EXPECT_LT(relative_error(r.dw, product_tn(dyt, xt, N, K, M)), 1e-6);

  // Against the unquantized products: FP8's error, no more.
  const double ey = relative_error(r.y, product_tn(o.xd(), o.wd(), M, N, K));
  const double edx = relative_error(r.dx, product_tn(o.dyd(), transpose(o.wd(), N, K), M, K, N));
  const double edw = relative_error(
      r.dw, product_tn(transpose(o.dyd(), M, N), transpose(o.xd(), M, K), N, K, M));
  std::printf("fp8 vs exact: fprop %.3g, dgrad %.3g, wgrad %.3g\n", ey, edx, edw);
  for (double e : {ey, edx, edw}) {
    EXPECT_GT(e, 1e-3);  // it is FP8
    EXPECT_LT(e, 0.05);
  }
}

TEST(LinearPrecision, HybridUsesE5M2ForGradientsOnly) {
  config::PrecisionSection p;
  p.compute = "fp8";
  p.fp8.format = "hybrid";
  const LinearFormat f = plan_precision(p).compute;
  EXPECT_EQ(f.forward_format, k::Fp8Format::kE4M3);
  EXPECT_EQ(f.gradient_format, k::Fp8Format::kE5M2);
  const Operands o;
  const Results r = run_linear(f, o);
  // Fprop is unchanged by the gradient format; Dgrad is coarser (2 mantissa bits).
  const Results e4 = run_linear(format_of(LinearPrecision::kFp8), o);
  EXPECT_EQ(r.y, e4.y);
  const double edx = relative_error(r.dx, product_tn(o.dyd(), transpose(o.wd(), N, K), M, K, N));
  const double edx4 =
      relative_error(e4.dx, product_tn(o.dyd(), transpose(o.wd(), N, K), M, K, N));
  EXPECT_GT(edx, edx4);
  EXPECT_LT(edx, 0.1);
}

TEST(LinearPrecision, PlanKeepsListedBlocksAndTheGateInBf16) {
  config::PrecisionSection p;
  p.compute = "fp8";
  p.fp8.high_precision_blocks = {0, 3};
  const PrecisionPlan plan = plan_precision(p);
  EXPECT_EQ(plan.for_block(0).precision, LinearPrecision::kBf16);
  EXPECT_EQ(plan.for_block(1).precision, LinearPrecision::kFp8);
  EXPECT_EQ(plan.for_block(3).precision, LinearPrecision::kBf16);
  EXPECT_EQ(plan.gate().precision, LinearPrecision::kBf16);
  EXPECT_EQ(describe(plan.for_block(1)), "fp8 e4m3 (x,dy 1x128, W 128x128, Wgrad 128x1)");
  EXPECT_EQ(plan_precision({}).for_block(0).precision, LinearPrecision::kFp32);
  EXPECT_EQ(plan_precision({}).gate().precision, LinearPrecision::kFp32);
}

TEST(LinearInputCache, BytesPerFormat) {
  const auto x = to_float(random_vector(M * K, 4));
  LinearInput<float> cache;
  cache.store(x.data(), M, K, format_of(LinearPrecision::kFp32));
  EXPECT_EQ(cache.bytes(), M * K * 4);
  cache.store(x.data(), M, K, format_of(LinearPrecision::kBf16));
  EXPECT_EQ(cache.bytes(), M * K * 2);
  cache.store(x.data(), M, K, format_of(LinearPrecision::kFp8));
  const int64_t tiles_per_row = (K + 127) / 128;  // 2
  EXPECT_EQ(cache.bytes(), M * K + 4 * M * tiles_per_row);
}

TEST(LinearInputCache, StoringRowBlocksEqualsStoringWhole) {
  const auto x = to_float(random_vector(M * K, 5));
  for (auto p : {LinearPrecision::kFp32, LinearPrecision::kBf16, LinearPrecision::kFp8}) {
    const LinearFormat f = format_of(p);
    LinearInput<float> whole, pieces;
    whole.store(x.data(), M, K, f);
    pieces.allocate(M, K, f);
    for (int64_t first = 0; first < M; first += 37) {
      const int64_t count = std::min<int64_t>(37, M - first);
      pieces.store_rows(first, x.data() + first * K, count, f);
    }
    EXPECT_EQ(whole.values, pieces.values);
    EXPECT_EQ(whole.bf16, pieces.bf16);
    EXPECT_EQ(whole.fp8.codes, pieces.fp8.codes);
    EXPECT_EQ(whole.fp8.scales, pieces.fp8.scales);
    // A row slice of the view reads the same rows.
    const auto all = whole.view(), slice = all.row_slice(40, 10);
    std::vector<float> y_all(M * 8), y_slice(10 * 8);
    const auto w = to_float(random_vector(8 * K, 6));
    linear_fprop(f, all, w.data(), y_all.data(), M, K, 8);
    linear_fprop(f, slice, w.data(), y_slice.data(), 10, K, 8);
    for (int64_t i = 0; i < 10 * 8; ++i) EXPECT_EQ(y_slice[i], y_all[40 * 8 + i]) << i;
  }
}

}  // namespace
}  // namespace baleine::model
