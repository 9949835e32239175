// The whole model's loss and gradients in BF16 and FP8 against FP32, on one batch: each
// low-precision mode must track FP32, and BF16 (8 significant bits) must track it more closely
// than FP8 (E4M3: 4 significant bits with per-tile scales).
#include <gtest/gtest.h>

#include <cmath>

#include "tests/gradcheck.h"
#include "tests/model/model_test_configs.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

using baleine::testing::random_ids;

struct Outcome {
  double loss = 0;
  std::vector<float> grads;
};

Outcome run(const std::string& compute) {
  config::PrecisionSection p;
  p.compute = compute;
  const auto m = baleine::testing::small_moe_model();
  Model<float> model(m, 11, {}, plan_precision(p));
  const BatchShape shape{2, 64};
  const auto inputs = random_ids(shape.tokens(), 257, 1), targets = random_ids(shape.tokens(), 257, 2);
  model.parameters().zero_grads();
  Outcome o;
  o.loss = model.forward(inputs.data(), targets.data(), shape).total();
  model.backward(1.0f);
  o.grads = model.parameters().grads().to_host();
  return o;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

TEST(PrecisionGradients, Bf16AndFp8TrackFp32AndBf16TracksCloser) {
  const Outcome fp32 = run("fp32"), bf16 = run("bf16"), fp8 = run("fp8");
  const double bf16_grad = relative_error(bf16.grads, fp32.grads);
  const double fp8_grad = relative_error(fp8.grads, fp32.grads);
  const double bf16_loss = std::abs(bf16.loss - fp32.loss) / fp32.loss;
  const double fp8_loss = std::abs(fp8.loss - fp32.loss) / fp32.loss;
  std::printf("vs fp32: bf16 loss %.2e grads %.2e; fp8 loss %.2e grads %.2e\n", bf16_loss,
              bf16_grad, fp8_loss, fp8_grad);
  EXPECT_GT(bf16_grad, 0.0);
  EXPECT_LT(bf16_grad, fp8_grad);
  EXPECT_LT(bf16_grad, 0.02);
  EXPECT_LT(fp8_grad, 0.15);
  EXPECT_LT(bf16_loss, 1e-3);
  EXPECT_LT(fp8_loss, 1e-2);
}

}  // namespace
}  // namespace baleine::model
