// gemm against a naive triple loop (all transposes, odd sizes, strides, alpha/beta), float vs
// double, NaN-proof beta == 0, thread-count determinism; the Linear products by finite
// differences; and a GFLOP/s printout for the shapes training runs.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <limits>

#include "tests/gradcheck.h"

namespace baleine::kernels {
namespace {

using testing::random_vector;

// Sizes and strides of one gemm call; stored shapes follow from the transposes.
struct Shape {
  bool trans_a, trans_b;
  int64_t M, N, K, lda, ldb, ldc;
  size_t a_size() const { return size_t((trans_a ? K : M) * lda); }
  size_t b_size() const { return size_t((trans_b ? N : K) * ldb); }
  size_t c_size() const { return size_t(M * ldc); }
};

Shape make_shape(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t pad) {
  return {ta, tb, M, N, K, (ta ? M : K) + pad, (tb ? K : N) + pad, N + pad};
}

// The definition, summed in long double.
template <typename T>
std::vector<double> naive_gemm(const Shape& s, double alpha, const std::vector<T>& A,
                               const std::vector<T>& B, double beta, const std::vector<T>& C) {
  std::vector<double> out(C.begin(), C.end());
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < s.N; ++j) {
      long double sum = 0;
      for (int64_t k = 0; k < s.K; ++k) {
        const double a = s.trans_a ? A[size_t(k * s.lda + i)] : A[size_t(i * s.lda + k)];
        const double b = s.trans_b ? B[size_t(j * s.ldb + k)] : B[size_t(k * s.ldb + j)];
        sum += (long double)a * b;
      }
      const double old = C[size_t(i * s.ldc + j)];
      out[size_t(i * s.ldc + j)] = alpha * double(sum) + (beta == 0 ? 0.0 : beta * old);
    }
  return out;
}

// Runs gemm<T> on random data and compares every element of C (the padding between N and ldc
// included: it must be left untouched) with the naive result.
template <typename T>
void check_against_naive(const Shape& s, double alpha, double beta, double tol, uint64_t seed) {
  const auto a64 = random_vector(s.a_size(), seed);
  const auto b64 = random_vector(s.b_size(), seed + 1);
  const auto c64 = random_vector(s.c_size(), seed + 2);
  std::vector<T> A(a64.begin(), a64.end()), B(b64.begin(), b64.end()), C(c64.begin(), c64.end());
  const auto expected = naive_gemm(s, alpha, A, B, beta, C);
  gemm<T>(s.trans_a, s.trans_b, s.M, s.N, s.K, T(alpha), A.data(), s.lda, B.data(), s.ldb,
          T(beta), C.data(), s.ldc);
  for (size_t i = 0; i < C.size(); ++i) {
    ASSERT_NEAR(C[i], expected[i], tol)
        << "ta=" << s.trans_a << " tb=" << s.trans_b << " M=" << s.M << " N=" << s.N
        << " K=" << s.K << " beta=" << beta << " at " << i;
  }
}

// Tolerances: entries are N(0,1), so each C element is a sum of K products of size ~1 with
// magnitude ~sqrt(K). Float round-off grows at most like K·2⁻²⁴·Σ|a·b| (~1e-4 at K = 600);
// double's like K·2⁻⁵³·Σ|a·b| (~1e-13). A wrong index or a missing block is O(1).
constexpr double kFloatTol = 2e-4, kDoubleTol = 1e-10;

TEST(Gemm, AllTransposesOddSizesStridesAndBetas) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (double beta : {0.0, 1.0, 0.5}) {
        const Shape s = make_shape(ta, tb, 37, 53, 29, 3);
        check_against_naive<float>(s, 1.3, beta, kFloatTol, 10 + ta * 2 + tb);
        check_against_naive<double>(s, 1.3, beta, kDoubleTol, 20 + ta * 2 + tb);
      }
}

TEST(Gemm, CrossesEveryBlockBoundary) {
  // K > KC (several K blocks, beta applied once), M over several MC blocks with a ragged tail,
  // and N > NC for float (several column blocks).
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      check_against_naive<float>(make_shape(ta, tb, 251, 70, 600, 1), 0.7, 0.5, kFloatTol, 30);
      check_against_naive<double>(make_shape(ta, tb, 251, 70, 600, 1), 0.7, 0.5, kDoubleTol,
                                  31);
    }
  check_against_naive<float>(make_shape(false, true, 7, 4100, 5, 2), 1.0, 1.0, kFloatTol, 32);
  check_against_naive<double>(make_shape(true, false, 9, 2100, 5, 2), 1.0, 0.0, kDoubleTol, 33);
}

TEST(Gemm, OneThreadPackingPanelsAsItGoes) {
  // Alone, a thread packs each B panel just before its first use and prefetches the next
  // one's source: every transpose, several row blocks and K blocks, a ragged last panel.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      check_against_naive<float>(make_shape(ta, tb, 251, 70, 600, 1), 0.7, 0.5, kFloatTol, 34);
      check_against_naive<double>(make_shape(ta, tb, 251, 70, 600, 1), 0.7, 0.5, kDoubleTol,
                                  35);
    }
  omp_set_num_threads(saved);
}

TEST(Gemm, TwoThreadsSplittingByPanels) {
  // 4 or 8 panels split evenly: each thread packs its own as it goes. K = 600 ends in a short
  // block, whose panels must not land where the other thread still reads its longer ones.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t n : {128, 250}) {
        check_against_naive<float>(make_shape(ta, tb, 300, n, 600, 1), 0.7, 0.5, kFloatTol, 36);
        check_against_naive<double>(make_shape(ta, tb, 300, n, 600, 1), 0.7, 0.5, kDoubleTol,
                                    37);
      }
  omp_set_num_threads(saved);
}

TEST(Gemm, KOfManyBlocks) {
  // K = 90000 is ~350 KC blocks, the last one ragged: beta must apply once, in the first block,
  // and each later block add onto C, for every transpose.
  // Round-off: K·2⁻⁵³·Σ|a·b| is ~1e-6 at this K.
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      check_against_naive<double>(make_shape(ta, tb, 3, 40, 90000, 1), 1.0, 0.5, 1e-5, 45);
}

TEST(Gemm, TinyAndDegenerateSizes) {
  check_against_naive<float>(make_shape(false, false, 1, 1, 1, 0), 2.0, 0.5, kFloatTol, 40);
  check_against_naive<double>(make_shape(true, true, 2, 3, 1, 1), 1.0, 0.0, kDoubleTol, 41);
  // K == 0: no product; C = beta · C.
  check_against_naive<double>(make_shape(false, false, 4, 5, 0, 1), 1.0, 0.5, kDoubleTol, 42);
  check_against_naive<double>(make_shape(false, false, 4, 5, 0, 1), 1.0, 0.0, kDoubleTol, 43);
}

TEST(Gemm, FloatAgreesWithDouble) {
  const Shape s = make_shape(true, false, 64, 48, 200, 0);
  const auto a = random_vector(s.a_size(), 50), b = random_vector(s.b_size(), 51);
  std::vector<double> c64(s.c_size());
  std::vector<float> c32(s.c_size());
  const auto a32 = testing::to_float(a), b32 = testing::to_float(b);
  gemm<double>(true, false, s.M, s.N, s.K, 1.0, a.data(), s.lda, b.data(), s.ldb, 0.0,
               c64.data(), s.ldc);
  gemm<float>(true, false, s.M, s.N, s.K, 1.0f, a32.data(), s.lda, b32.data(), s.ldb, 0.0f,
              c32.data(), s.ldc);
  // Float inputs are rounded (rel 6e-8) and 200 products are summed: ~1e-5 absolute at most.
  for (size_t i = 0; i < c64.size(); ++i) ASSERT_NEAR(c32[i], c64[i], 1e-4) << i;
}

TEST(Gemm, BetaZeroIgnoresNaNInC) {
  const Shape s = make_shape(false, true, 19, 33, 17, 0);
  const auto a = testing::to_float(random_vector(s.a_size(), 60));
  const auto b = testing::to_float(random_vector(s.b_size(), 61));
  std::vector<float> c(s.c_size(), std::numeric_limits<float>::quiet_NaN());
  gemm<float>(false, true, s.M, s.N, s.K, 1.0f, a.data(), s.lda, b.data(), s.ldb, 0.0f,
              c.data(), s.ldc);
  for (float x : c) ASSERT_TRUE(std::isfinite(x));
  std::vector<double> d(20, std::numeric_limits<double>::quiet_NaN());
  gemm<double>(false, false, 4, 5, 0, 1.0, nullptr, 1, nullptr, 1, 0.0, d.data(), 5);
  for (double x : d) ASSERT_EQ(x, 0.0);
}

TEST(Gemm, BitIdenticalForOneAndTwoThreads) {
  const int saved = omp_get_max_threads();
  for (int ta = 0; ta < 2; ++ta) {
    const Shape s = make_shape(ta, !ta, 301, 157, 530, 0);  // 5 panels: tiles split in runs
    const auto a = testing::to_float(random_vector(s.a_size(), 70));
    const auto b = testing::to_float(random_vector(s.b_size(), 71));
    std::vector<float> c1(s.c_size(), 1.0f), c2(s.c_size(), 1.0f);
    omp_set_num_threads(1);
    gemm<float>(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, a.data(), s.lda, b.data(), s.ldb,
                0.5f, c1.data(), s.ldc);
    omp_set_num_threads(2);
    gemm<float>(s.trans_a, s.trans_b, s.M, s.N, s.K, 1.0f, a.data(), s.lda, b.data(), s.ldb,
                0.5f, c2.data(), s.ldc);
    testing::expect_bitwise_equal("gemm", c1, c2);
  }
  omp_set_num_threads(saved);
}

// L = Σ y ⊙ R with y = x·wᵀ; the backward products fed dy = R must be its gradients.
TEST(Linear, GradientsMatchFiniteDifferences) {
  const int64_t M = 5, K = 7, N = 4;
  auto x = random_vector(size_t(M * K), 80), w = random_vector(size_t(N * K), 81);
  const auto R = random_vector(size_t(M * N), 82);
  auto loss = [&] {
    std::vector<double> y(size_t(M * N));
    linear_forward(x.data(), w.data(), y.data(), M, K, N);
    return testing::dot(y, R);
  };
  std::vector<double> dx(size_t(M * K), 123.0), dw(size_t(N * K), 0.0);
  linear_backward_input(R.data(), w.data(), dx.data(), M, K, N);  // overwrites the 123s
  linear_backward_weight(R.data(), x.data(), dw.data(), M, K, N);
  testing::expect_gradient_matches("dx", x, dx, loss);
  testing::expect_gradient_matches("dw", w, dw, loss);
}

TEST(Linear, WeightGradientAccumulates) {
  const int64_t M = 6, K = 3, N = 5;
  const auto x = random_vector(size_t(M * K), 90), dy = random_vector(size_t(M * N), 91);
  std::vector<double> once(size_t(N * K), 0.0), twice(size_t(N * K), 0.0);
  linear_backward_weight(dy.data(), x.data(), once.data(), M, K, N);
  linear_backward_weight(dy.data(), x.data(), twice.data(), M, K, N);
  linear_backward_weight(dy.data(), x.data(), twice.data(), M, K, N);
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(twice[i], 2 * once[i], 1e-12);
}

// Not a pass/fail test (speed depends on the machine and its load): prints the float GFLOP/s
// with 2 threads for the training shapes; the checksum guards against dead-code elimination.
TEST(Gemm, PrintsFloatThroughputWithTwoThreads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  const int64_t shapes[][3] = {{2048, 512, 128}, {2048, 128, 512}, {512, 512, 512}};
  for (const auto& shape : shapes) {
    const int64_t M = shape[0], N = shape[1], K = shape[2];
    const auto a = testing::to_float(random_vector(size_t(M * K), 100));
    const auto b = testing::to_float(random_vector(size_t(N * K), 101));
    std::vector<float> c(size_t(M * N));
    for (bool trans_b : {false, true}) {
      auto run = [&] {
        gemm<float>(false, trans_b, M, N, K, 1.0f, a.data(), K, b.data(), trans_b ? K : N, 0.0f,
                    c.data(), N);
      };
      run();  // warm the packing buffers and the thread pool
      // The fastest of 10 runs: the machine is shared, and other load only ever adds time.
      double seconds = 1e30;
      for (int r = 0; r < 10; ++r) {
        const auto start = std::chrono::steady_clock::now();
        run();
        seconds = std::min(seconds, std::chrono::duration<double>(
                                        std::chrono::steady_clock::now() - start).count());
      }
      std::printf("[ gemm     ] M=%ld N=%ld K=%ld trans_b=%d: %.1f GFLOP/s (2·M·N·K / time)\n",
                  long(M), long(N), long(K), int(trans_b), 2.0 * M * N * K / seconds * 1e-9);
      EXPECT_TRUE(std::isfinite(c[0]));
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace baleine::kernels
