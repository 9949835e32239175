// The step loop allocates nothing once it is warm: every buffer a forward, a backward and the
// optimizer need (activations, temporaries, GEMM packing, attention and routing scratch, expert
// rows, FP8 quantizer scratch, micro-batch states) is kept and reused from one micro-batch and
// step to the next, like an arena. Counted by replacing the global operator new of this test
// program, over whole training steps (micro-batches with gradient accumulation, then AdamW) of
// a quickstart-shaped MoE model in FP32, BF16 and FP8 Linear precision. Single process: with
// expert parallelism a rank's expert rows vary with routing, and its buffers grow whenever a
// step routes it more rows than any step before.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "tests/gradcheck.h"
#include "tests/model/model_test_configs.h"
#include "trainer/model/model.h"
#include "trainer/optim/adamw.h"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace baleine::optim {
using namespace baleine::model;
namespace {

// The quickstart model with 3 blocks and no balance loss.
config::ModelSection quickstart_shaped() {
  config::ModelSection m = baleine::testing::quickstart_model();
  m.layers = 3;
  m.moe.seq_aux_alpha = 0;
  return m;
}

long allocations_in_warm_steps(const PrecisionPlan& precision, MomentPrecision moments) {
  const config::ModelSection m = quickstart_shaped();
  Model<float> model(m, 5, ModelParallelism{}, precision);
  AdamW optimizer(config::AdamWSection{}, 1.0, model.parameters(), {}, false, moments);
  int64_t step = 0;
  const BatchShape shape{2, 64};
  // Different batches route differently: the expert buffers must already fit any of them.
  std::vector<std::vector<int32_t>> inputs, targets;
  for (int b = 0; b < 4; ++b) {
    inputs.push_back(testing::random_ids(shape.tokens(), m.vocab_size, 10 + b));
    targets.push_back(testing::random_ids(shape.tokens(), m.vocab_size, 20 + b));
  }
  auto train_step = [&](bool reversed) {
    model.parameters().zero_grads();
    for (int i = 0; i < 4; ++i) {
      const int b = reversed ? 3 - i : i;
      model.forward(inputs[b].data(), targets[b].data(), shape);
      model.backward(0.25f);
    }
    optimizer.step(model.parameters(), 1e-3, ++step);
  };
  train_step(false);  // warm-up: buffers grow to their sizes
  allocations = 0;
  counting = true;
  train_step(true);
  train_step(false);
  counting = false;
  return allocations.load();
}

TEST(SteadyState, WarmStepsAllocateNothing) {
  EXPECT_EQ(allocations_in_warm_steps(plan_precision(config::PrecisionSection{}),
                                      MomentPrecision::kFp32),
            0);
}

TEST(SteadyState, WarmStepsAllocateNothingInBf16AndFp8) {
  for (const char* compute : {"bf16", "fp8"}) {
    config::PrecisionSection p;
    p.compute = compute;
    EXPECT_EQ(allocations_in_warm_steps(plan_precision(p), MomentPrecision::kBf16), 0)
        << compute;
  }
}

}  // namespace
}  // namespace baleine::optim
