// Learning-rate schedule and AdamW over a ParameterStore (the kernel itself is tested in
// tests/kernels/adamw_test.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"

namespace baleine::optim {
namespace {

TEST(LearningRate, WarmupThenCosineToMin) {
  config::LrSection lr;
  lr.peak = 1e-3;
  lr.min = 1e-4;
  lr.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(learning_rate(lr, 1, 110), 1e-4);
  EXPECT_DOUBLE_EQ(learning_rate(lr, 10, 110), 1e-3);
  EXPECT_NEAR(learning_rate(lr, 60, 110), 0.5 * (1e-3 + 1e-4), 1e-15);  // half-way
  EXPECT_DOUBLE_EQ(learning_rate(lr, 110, 110), 1e-4);
  for (int64_t s = 11; s < 110; ++s) EXPECT_GE(learning_rate(lr, s, 110), learning_rate(lr, s + 1, 110));
  lr.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(lr, 80, 110), 1e-3);
  lr.warmup_steps = 0;
  lr.schedule = "cosine";
  EXPECT_DOUBLE_EQ(learning_rate(lr, 0, 100), 1e-3);
}

TEST(AdamW, ClipsByGlobalNormAndDecaysOnlyMatrices) {
  model::ParameterStore<float> store;
  const auto w = store.declare("w", {2, 2}, model::Init::kOnes, 0, true);
  const auto g = store.declare("g", {2}, model::Init::kOnes, 0, false);
  store.allocate(1);
  for (int i = 0; i < 4; ++i) store.grad(w)[i] = 3.0f;  // norm = sqrt(4·9 + 2·16) = sqrt(68)
  for (int i = 0; i < 2; ++i) store.grad(g)[i] = 4.0f;
  config::AdamWSection hyper;
  hyper.weight_decay = 0.5;
  AdamW opt(hyper, /*grad_clip=*/1.0, store);
  const auto stats = opt.step(store, 0.1, 1);
  EXPECT_NEAR(stats.grad_norm, std::sqrt(68.0), 1e-5);
  EXPECT_NEAR(stats.clip_scale, 1.0 / std::sqrt(68.0), 1e-7);
  // First Adam step moves every element by lr·sign(g) (bias-corrected m/√v = ±1, ε aside);
  // decoupled decay adds lr·wd·p on matrices only.
  EXPECT_NEAR(store.value(w)[0], 1.0f - 0.1f - 0.1f * 0.5f, 1e-5);
  EXPECT_NEAR(store.value(g)[0], 1.0f - 0.1f, 1e-5);
  EXPECT_EQ(opt.state_bytes(), 6 * 2 * 4);
}

}  // namespace
}  // namespace baleine::optim
