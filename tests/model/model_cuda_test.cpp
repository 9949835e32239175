// The whole model on the CUDA backend (model/cuda) against the same model on the CPU backend:
// the quickstart model (configs/quickstart.yaml's model section: 4 blocks, hidden 96, 8 routed
// experts top-2 plus a shared one), same seed and batch, forward and backward, in FP32, BF16 and
// FP8. Also: a warm step allocates no device memory, and the GPU is deterministic (two runs,
// the same bits). Skips without a GPU.
//
// Tolerances, relative (‖gpu − cpu‖ / ‖cpu‖ over all parameter gradients):
//   fp32: both sides compute in FP32 and differ in summation order only; over 4 blocks of
//     GEMMs with K ≤ 256 and the attention and loss reductions that is ~1e-6 per op, and the
//     backward compounds it over the depth: 1e-4 for gradients, 1e-5 for the loss.
//   bf16: both sides round the same operands to BF16, but an FP32 difference of a few ulps in
//     an activation can move its BF16 rounding by one BF16 ulp (2⁻⁸ relative): 2e-2 for
//     gradients, 1e-3 for the loss (a mean over 256 tokens). On sm_80+ the GPU's attention core
//     also runs in BF16 (cuDNN, AttentionCore::kBf16) where the CPU's is FP32: one more BF16
//     rounding of q, k, v, P and the outputs per block, errors of the same 2⁻⁹ size that
//     average out over the loss; the bounds are meant to hold with it (calibrate on a GPU).
//   fp8: the same with E4M3's 2⁻³ steps on the quantized values, plus a different accumulation
//     order inside the FP8 GEMMs: 1e-1 for gradients, 1e-2 for the loss.
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(ModelCuda, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tests/gradcheck.h"
#include "tests/kernels/cuda_test_support.h"
#include "tests/model/model_test_configs.h"
#include "trainer/model/cuda/cuda_backend.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

using baleine::testing::quickstart_model;
using baleine::testing::random_ids;
using kernels::cuda::testing::relative_error;

struct Outcome {
  double loss = 0;
  std::vector<float> grads;
};

// Two micro-batches of 2 × 64 tokens, the second through a split backward (B, then W).
Outcome step(Model<float>& model) {
  const BatchShape shape{2, 64};
  model.parameters().zero_grads();
  Outcome o;
  for (int micro = 0; micro < 2; ++micro) {
    const auto inputs = random_ids(shape.tokens(), 257, 100 + micro);
    const auto targets = random_ids(shape.tokens(), 257, 200 + micro);
    o.loss += model.forward_part(0, micro, inputs.data(), targets.data(), nullptr, nullptr, shape)
                  .total();
    model.backward_part(0, micro, nullptr, nullptr, 0.5f, /*split=*/micro == 1);
  }
  model.backward_weight_part(0, 1);
  o.grads = model.parameters().grads().to_host();
  return o;
}

Outcome run_on(Backend& backend, const std::string& compute) {
  const BackendScope scope(backend);
  config::PrecisionSection p;
  p.compute = compute;
  Model<float> model(quickstart_model(), 7, {}, plan_precision(p));
  return step(model);
}

// Skips without a GPU (its own stream and arena go unused: the model runs on cuda_backend()).
using ModelCuda = kernels::cuda::testing::GpuTest;
TEST_F(ModelCuda, ForwardAndBackwardMatchTheCpuBackendInEachPrecision) {
  const struct {
    const char* compute;
    double loss_tolerance, grad_tolerance;
  } cases[] = {{"fp32", 1e-5, 1e-4}, {"bf16", 1e-3, 2e-2}, {"fp8", 1e-2, 1e-1}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.compute);
    const Outcome cpu = run_on(cpu_backend(), c.compute);
    const Outcome gpu = run_on(cuda_backend(), c.compute);
    ASSERT_TRUE(std::isfinite(gpu.loss));
    EXPECT_NEAR(gpu.loss, cpu.loss, c.loss_tolerance * std::abs(cpu.loss));
    ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
    const double error = relative_error(gpu.grads, cpu.grads);
    EXPECT_LT(error, c.grad_tolerance);
    std::printf("%s: loss cpu %.7f gpu %.7f; gradient relative error %.3g\n", c.compute,
                cpu.loss, gpu.loss, error);
  }
}

TEST_F(ModelCuda, TwoRunsGiveTheSameBitsAndAWarmStepAllocatesNothing) {
  const BackendScope scope(cuda_backend());
  Model<float> model(quickstart_model(), 7);
  const Outcome first = step(model);
  const Outcome second = step(model);  // same parameters, same batch
  EXPECT_EQ(first.loss, second.loss);
  EXPECT_EQ(0, std::memcmp(first.grads.data(), second.grads.data(),
                           first.grads.size() * sizeof(float)));
  const int64_t allocations = cuda_backend_arena().stats().device_allocations;
  step(model);
  EXPECT_EQ(cuda_backend_arena().stats().device_allocations, allocations)
      << "a warm step called cudaMalloc";
}

}  // namespace
}  // namespace baleine::model

#endif  // BALEINE_HAVE_CUDA
