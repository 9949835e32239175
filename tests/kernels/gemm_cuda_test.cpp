// The CUDA dense GEMMs (kernels/cuda/gemm.h) against the CPU kernels (kernels/gemm.h):
//   - FP32, every transpose combination, alpha and beta other than 0 and 1, beta == 0 over a
//     NaN-filled C (must be ignored), odd shapes (37×53×29, 1×1×1), leading dimensions longer
//     than the rows (submatrices: the padding must come back untouched);
//   - K == 0 and alpha == 0: C = beta·C, with NaN operands that must not be read;
//   - BF16 operands with FP32 and with BF16 C, against the CPU's FP32 gemm on the same
//     BF16-rounded inputs; a DeepSeek-sized BF16 product (4096×2048×7168);
//   - the Linear layer's three products (dx overwritten, dw accumulated);
//   - TF32 only when asked for;
//   - a second call at a shape makes no plan and allocates nothing; bad arguments throw.
//
// Tolerances: relative, ‖got − want‖₂ / ‖want‖₂ over the M×N result (cuda_test_support.h).
//   FP32 (and BF16 operands with FP32 C): 1e-5. Both sides sum the same FP32 products (a product
//       of two BF16 values is exact in FP32) in different orders: cuBLAS's tiles and split-K
//       against the CPU's k-ascending blocks. A sum of K terms is off by at most ~K·2⁻²⁴ of
//       Σ|terms|, typically √K·2⁻²⁴ of it, and with random signs ‖C‖ ≈ √K·|term|: a few 1e-6 at
//       K = 4096 by that estimate. Measured, the CPU kernel against a double-precision sum is
//       closer still (1e-7 at K = 4096 and 7168, 128×256 random BF16-rounded products; its FMAs
//       and 256-long blocks help), and cuBLAS is of the same order. So 1e-5 holds up to the
//       DeepSeek-sized K = 7168 with margin, and still fails a TF32 product (~1e-3) or a wrong
//       index or transpose (~1).
//   BF16 C: one more rounding, to 8 significant bits: |bf16(v) − v| ≤ 2⁻⁸·|v| per element, so
//       the norm ratio is at most 2⁻⁸ plus the FP32 difference: 2⁻⁸ + 1e-5.
//   TF32: operands cut to 10 mantissa bits, ≤ 2⁻¹⁰ relative each when truncated (what the
//       tensor cores do with raw FP32 registers), so a product is off by up to 2⁻⁹ ≈ 2e-3, all
//       in the same direction (no cancellation): 3e-3.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(CudaGemm, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "kernels/device.h"
#include "kernels/gemm.h"
#include "tests/kernels/cuda_test_support.h"
#include "tests/kernels/gemm_cuda_test_support.h"

namespace baleine::kernels::cuda {
namespace {

using testing::decode;
using testing::encode;
using testing::GpuTest;
using testing::kFp32Tolerance;
using testing::kNaN;
using testing::kTf32Tolerance;
using testing::LinearLayerTest;
using testing::LinearResults;
using testing::random_floats;
using testing::relative_error;
using testing::tolerance_for;
using testing::values_for;

struct Case {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad = 0;             // extra elements at the end of every row of A, B and C
  bool nan_operands = false;   // A and B all NaN (alpha == 0 must not read them)
};

std::string describe(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " trans_a=" + std::to_string(c.trans_a) + " trans_b=" + std::to_string(c.trans_b) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " pad=" + std::to_string(c.pad);
}

// The result's M×N part and its padding (row ends past N), taken apart.
struct Split {
  std::vector<float> part, padding;
};
Split split(const std::vector<float>& c, int64_t M, int64_t N, int64_t ldc) {
  Split s;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) (j < N ? s.part : s.padding).push_back(c[i * ldc + j]);
  }
  return s;
}

class CudaGemm : public GpuTest {
 protected:
  // Runs one case on the GPU and on the CPU, compares them (the message names the case) and
  // returns the relative error.
  template <typename In, typename Out>
  double expect_case(GemmContext& context, const Case& c, double fp32_tolerance, uint32_t seed) {
    const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
    const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
    const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
    std::vector<float> a = values_for<In>(random_floats(a_rows * lda, seed));
    std::vector<float> b = values_for<In>(random_floats(b_rows * ldb, seed + 1));
    if (c.nan_operands) {
      a.assign(a.size(), kNaN);
      b.assign(b.size(), kNaN);
    }
    std::vector<float> c0 = values_for<Out>(random_floats(c.M * ldc, seed + 2));
    if (c.beta == 0.0f) {  // must be ignored; the padding keeps values that must survive
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = 0; j < c.N; ++j) c0[i * ldc + j] = kNaN;
    }

    std::vector<float> want = c0;
    kernels::gemm<float>(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, a.data(), lda, b.data(),
                         ldb, c.beta, want.data(), ldc);

    const DeviceBuffer<In> a_dev = upload(encode<In>(a)), b_dev = upload(encode<In>(b));
    DeviceBuffer<Out> c_dev = upload(encode<Out>(c0));
    context.gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, a_dev.data(), lda, b_dev.data(),
                 ldb, c.beta, c_dev.data(), ldc, stream());
    const std::vector<float> got = decode(download(c_dev));

    const Split g = split(got, c.M, c.N, ldc), w = split(want, c.M, c.N, ldc);
    const double error = relative_error(g.part, w.part);
    EXPECT_LT(error, tolerance_for<Out>(fp32_tolerance)) << describe(c);
    EXPECT_EQ(g.padding, w.padding) << describe(c) << ": C's padding was written";
    return error;
  }

  template <typename In, typename Out>
  void expect_cases(GemmContext& context, const std::vector<Case>& cases) {
    uint32_t seed = 100;
    for (const Case& c : cases) expect_case<In, Out>(context, c, kFp32Tolerance, seed += 10);
  }
};

// Every transpose combination of: an odd shape with general alpha and beta, the same as a
// submatrix over a NaN-filled C with beta == 0, 1×1×1 both ways, and tensor-core-sized tiles.
std::vector<Case> general_cases() {
  std::vector<Case> cases;
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      cases.push_back({trans_a, trans_b, 37, 53, 29, 0.75f, -1.5f});
      cases.push_back({trans_a, trans_b, 37, 53, 29, 1.25f, 0.0f, 3});
      cases.push_back({trans_a, trans_b, 1, 1, 1, -2.0f, 0.5f});
      cases.push_back({trans_a, trans_b, 1, 1, 1, 1.0f, 0.0f, 5});
      cases.push_back({trans_a, trans_b, 64, 96, 128, 1.0f, 1.0f});
      cases.push_back({trans_a, trans_b, 130, 72, 520, -0.5f, 0.25f, 8});
    }
  }
  return cases;
}

// C = beta·C where no product is formed, and the empty shapes.
std::vector<Case> degenerate_cases() {
  return {
      {false, true, 37, 53, 0, 1.5f, -0.5f},        // K == 0: C = beta·C
      {true, false, 37, 53, 0, 1.0f, 0.0f, 2},      // K == 0, beta == 0 over NaN: zeros
      {false, false, 37, 53, 0, 1.0f, 1.0f},        // K == 0, beta == 1: C unchanged
      {false, true, 37, 53, 29, 0.0f, 2.0f, 0, true},  // alpha == 0: A, B (NaN) never read
      {true, true, 37, 53, 29, 0.0f, 0.0f, 1, true},   // ... and with beta == 0: zeros
      {false, false, 0, 53, 29, 1.0f, 0.5f},        // M == 0: nothing to do
      {false, false, 37, 0, 29, 1.0f, 0.5f, 4},     // N == 0: only padding, left alone
  };
}

TEST_F(CudaGemm, Fp32MatchesTheCpuForEveryTransposeAndScale) {
  GemmContext context;
  expect_cases<float, float>(context, general_cases());
}

TEST_F(CudaGemm, Fp32DegenerateShapesScaleCWithoutReadingAOrB) {
  GemmContext context;
  expect_cases<float, float>(context, degenerate_cases());
}

// The odd shapes' BF16 rows are 2-byte aligned; if cuBLASLt has no algorithm for one, it runs on
// cublasGemmEx (the property says how many did).
TEST_F(CudaGemm, Bf16OperandsWithFp32CMatchTheCpuOnTheRoundedInputs) {
  GemmContext context;
  expect_cases<uint16_t, float>(context, general_cases());
  expect_cases<uint16_t, float>(context, degenerate_cases());
  RecordProperty("plans_on_cublas", std::to_string(context.plans_on_cublas()));
}

TEST_F(CudaGemm, Bf16OperandsWithBf16CAreRoundedOnceAtTheEnd) {
  GemmContext context;
  expect_cases<uint16_t, uint16_t>(context, general_cases());
  expect_cases<uint16_t, uint16_t>(context, degenerate_cases());
  RecordProperty("plans_on_cublas", std::to_string(context.plans_on_cublas()));
}

// ---- the Linear layer --------------------------------------------------------------------------

// The CPU's linear_* on the whole batch, the reference of CudaLinear.
struct CpuLinear {
  int64_t M, K, N;
  void forward(const std::vector<float>& x, const std::vector<float>& w,
               std::vector<float>& y) const {
    kernels::linear_forward<float>(x.data(), w.data(), y.data(), M, K, N);
  }
  void backward_input(const std::vector<float>& dy, const std::vector<float>& w,
                      std::vector<float>& dx) const {
    kernels::linear_backward_input<float>(dy.data(), w.data(), dx.data(), M, K, N);
  }
  void backward_weight(const std::vector<float>& dy, const std::vector<float>& x,
                       std::vector<float>& dw) const {
    kernels::linear_backward_weight<float>(dy.data(), x.data(), dw.data(), M, K, N);
  }
};

class CudaLinear : public LinearLayerTest {
 protected:
  // forward, backward input (over NaN-filled outputs: overwritten) and backward weight twice
  // (accumulated onto a non-zero dw), against the CPU's linear_* on the same rounded inputs.
  template <typename In, typename Out>
  void expect_layer(GemmContext& context, int64_t M, int64_t K, int64_t N) {
    const std::string shape =
        "M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N);
    auto layer = make_layer<In, Out>(M, K, N, N * K);
    LinearResults got;
    linear_forward(context, layer.x_dev.data(), layer.w_dev.data(), layer.y_dev.data(), M, K, N,
                   stream());
    linear_backward_input(context, layer.dy_dev.data(), layer.w_dev.data(),
                          layer.dx_dev.data(), M, K, N, stream());
    linear_backward_weight(context, layer.dy_dev.data(), layer.x_dev.data(),
                           layer.dw_dev.data(), M, K, N, stream());
    got.dw_once = decode(download(layer.dw_dev));
    linear_backward_weight(context, layer.dy_dev.data(), layer.x_dev.data(),
                           layer.dw_dev.data(), M, K, N, stream());
    got.y = decode(download(layer.y_dev));
    got.dx = decode(download(layer.dx_dev));
    got.dw_twice = decode(download(layer.dw_dev));
    expect_layer_matches(layer, got, CpuLinear{M, K, N}, tolerance_for<Out>(kFp32Tolerance),
                         shape);
  }
};

// (M, K, N): an odd one, a tiny one, and one with tensor-core-sized tiles.
constexpr std::array<int64_t, 3> kLayerShapes[] = {{77, 96, 40}, {5, 29, 53}, {256, 512, 384}};

TEST_F(CudaLinear, Fp32MatchesTheCpuLayer) {
  GemmContext context;
  for (const auto& [M, K, N] : kLayerShapes) expect_layer<float, float>(context, M, K, N);
}

TEST_F(CudaLinear, Bf16MatchesTheCpuLayerOnTheRoundedInputs) {
  GemmContext context;
  for (const auto& [M, K, N] : kLayerShapes) {
    expect_layer<uint16_t, float>(context, M, K, N);
    expect_layer<uint16_t, uint16_t>(context, M, K, N);
  }
}

// DeepSeek-V3-like: 4096 tokens, hidden 7168, expert width 2048 (y = x·wᵀ, BF16 in, FP32 out).
TEST_F(CudaLinear, DeepSeekSizedBf16Forward) {
  const int64_t M = 4096, K = 7168, N = 2048;
  const std::vector<float> x = values_for<uint16_t>(random_floats(M * K, 21));
  const std::vector<float> w = values_for<uint16_t>(random_floats(N * K, 22));
  std::vector<float> want(M * N);
  kernels::linear_forward<float>(x.data(), w.data(), want.data(), M, K, N);

  GemmContext context;
  const DeviceBuffer<uint16_t> x_dev = upload(encode<uint16_t>(x));
  const DeviceBuffer<uint16_t> w_dev = upload(encode<uint16_t>(w));
  DeviceBuffer<float> y_dev = empty<float>(M * N);
  linear_forward(context, x_dev.data(), w_dev.data(), y_dev.data(), M, K, N, stream());
  EXPECT_LT(relative_error(download(y_dev), want), kFp32Tolerance);
}

// ---- math, plans, allocations, errors ----------------------------------------------------------

int sm_of(int device) {
  for (const CudaDevice& d : cuda_devices()) {
    if (d.index == device) return d.sm_major * 10 + d.sm_minor;
  }
  return 0;
}

TEST_F(CudaGemm, Tf32OnlyWhenAsked) {
  const Case c{false, true, 128, 256, 4096, 1.0f, 0.0f};
  GemmContext context;  // kFp32 by default
  ASSERT_EQ(context.math(), GemmMath::kFp32);
  expect_case<float, float>(context, c, kFp32Tolerance, 31);  // fails if TF32 were used

  context.set_math(GemmMath::kTf32);
  const double tf32_error = expect_case<float, float>(context, c, kTf32Tolerance, 31);
  // The option must reach cuBLASLt: on TF32 tensor cores (sm_80+) the error is ~1e-3, far
  // above FP32's (NVIDIA_TF32_OVERRIDE=0 in the environment would defeat this check).
  if (sm_of(context.device()) >= 80) {
    EXPECT_GT(tf32_error, kFp32Tolerance) << "TF32 asked for but not used";
  }
}

TEST_F(CudaGemm, ASecondCallAtAShapeMakesNoPlanAndAllocatesNothing) {
  GemmContext context;
  EXPECT_EQ(context.device_allocations(), 1) << "the workspace, at construction";
  EXPECT_EQ(context.plans(), 0);
  const int64_t M = 300, N = 200, K = 100;
  const DeviceBuffer<float> a = upload(random_floats(M * K, 41));
  const DeviceBuffer<float> b = upload(random_floats(N * K, 42));
  DeviceBuffer<float> c = empty<float>(M * N);
  const auto run = [&](int64_t m) {
    context.gemm(false, true, m, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N,
                 stream());
  };
  run(M);
  const int64_t arena_allocations = arena().stats().device_allocations;
  EXPECT_EQ(context.plans(), 1);
  run(M);
  run(M);
  EXPECT_EQ(context.plans(), 1) << "the heuristic ran again for a shape it had seen";
  EXPECT_EQ(context.device_allocations(), 1);
  EXPECT_EQ(arena().stats().device_allocations, arena_allocations);
  run(M - 1);  // a new shape: a new plan, still no allocation
  EXPECT_EQ(context.plans(), 2);
  EXPECT_EQ(context.device_allocations(), 1);
}

TEST_F(CudaGemm, RefusesBadArguments) {
  GemmContext context;
  DeviceBuffer<float> buffer = empty<float>(64);
  float* p = buffer.data();
  EXPECT_THROW(context.gemm(false, false, -1, 4, 4, 1.0f, p, 4, p, 4, 0.0f, p, 4, stream()),
               std::invalid_argument);
  EXPECT_THROW(context.gemm(false, false, 4, 4, 4, 1.0f, p, 3, p, 4, 0.0f, p, 4, stream()),
               std::invalid_argument);  // lda < K
  EXPECT_THROW(context.gemm(true, false, 4, 4, 5, 1.0f, p, 4, p, 3, 0.0f, p, 4, stream()),
               std::invalid_argument);  // ldb < N
  EXPECT_THROW(context.gemm(false, false, 4, 4, 4, 1.0f, p, 4, p, 4, 0.0f, p, 3, stream()),
               std::invalid_argument);  // ldc < N
  EXPECT_THROW(context.gemm(false, false, 4, 4, 4, 1.0f, p, 4, p, 4, 0.0f,
                            static_cast<float*>(nullptr), 4, stream()),
               std::invalid_argument);
  EXPECT_THROW(context.gemm(false, false, 4, 4, 4, 1.0f, static_cast<const float*>(nullptr), 4,
                            p, 4, 0.0f, p, 4, stream()),
               std::invalid_argument);
}

}  // namespace
}  // namespace baleine::kernels::cuda

#endif  // BALEINE_HAVE_CUDA
