// Whole-model and per-layer gradient checks in double precision against central finite
// differences (method and tolerance: tests/gradcheck.h). The model is tiny so that EVERY
// parameter is checked: 2 blocks (one dense SwiGLU, one MoE with a shared expert), vocab 11.
#include <gtest/gtest.h>

#include <vector>

#include "tests/gradcheck.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

using baleine::testing::expect_gradient_matches;
using baleine::testing::random_ids;
using baleine::testing::random_vector;

config::ModelSection tiny_moe_model() {
  config::ModelSection m;
  m.vocab_size = 11;
  m.hidden = 8;
  m.heads = 2;
  m.layers = 2;
  m.dense_layers = 1;
  m.intermediate = 8;
  m.init_std = 0.3;  // large enough that every path carries a visible gradient
  m.moe.routed_experts = 4;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 4;
  return m;
}

// Checks d(total loss)/d(every parameter) for one micro-batch.
void check_model_gradient(const config::ModelSection& m, uint64_t seed) {
  Model<double> model(m, seed);
  // A non-zero routing bias: it must change which experts are chosen and nothing else.
  for (auto* moe : model.moe_layers()) {
    auto bias = random_vector(moe->bias().size(), seed + 7, 0.2);
    moe->bias().assign(bias.begin(), bias.end());
  }
  const BatchShape shape{2, 5};
  const auto inputs = random_ids(shape.tokens(), static_cast<int32_t>(m.vocab_size), seed + 1);
  const auto targets = random_ids(shape.tokens(), static_cast<int32_t>(m.vocab_size), seed + 2);

  auto& params = model.parameters();
  params.zero_grads();
  model.forward(inputs.data(), targets.data(), shape);
  model.backward(1.0);
  const std::vector<double> analytic = params.grads().to_host();

  auto loss = [&] { return model.forward(inputs.data(), targets.data(), shape).total(); };
  for (const auto& e : params.entries()) {
    std::vector<double> slice(params.values().begin() + e.offset,
                              params.values().begin() + e.offset + e.size);
    std::vector<double> expected(analytic.begin() + e.offset, analytic.begin() + e.offset + e.size);
    auto loss_of_slice = [&] {
      std::copy(slice.begin(), slice.end(), params.values().begin() + e.offset);
      return loss();
    };
    expect_gradient_matches(e.name, slice, expected, loss_of_slice, 1e-6, 1e-6, 100000);
    std::copy(slice.begin(), slice.end(), params.values().begin() + e.offset);
  }
}

TEST(ModelGradient, TwoLayerMoeSigmoidNormalized) { check_model_gradient(tiny_moe_model(), 11); }

TEST(ModelGradient, SoftmaxRoutingWithBalanceLossAndRouteScale) {
  auto m = tiny_moe_model();
  m.moe.score = "softmax";
  m.moe.normalize = false;
  m.moe.route_scale = 2.5;
  m.moe.seq_aux_alpha = 0.1;  // large so that its gradient is not lost in the CE's
  check_model_gradient(m, 12);
}

TEST(ModelGradient, AllMoeNoSharedExpertsWithBalanceLoss) {
  auto m = tiny_moe_model();
  m.dense_layers = 0;
  m.moe.shared_experts = 0;
  m.moe.seq_aux_alpha = 0.05;
  check_model_gradient(m, 13);
}

TEST(ModelGradient, LossScaleScalesGradientsLinearly) {
  const auto m = tiny_moe_model();
  Model<double> model(m, 5);
  const BatchShape shape{2, 5};
  const auto inputs = random_ids(shape.tokens(), 11, 3);
  const auto targets = random_ids(shape.tokens(), 11, 4);
  auto& p = model.parameters();
  p.zero_grads();
  model.forward(inputs.data(), targets.data(), shape);
  model.backward(1.0);
  const auto once = p.grads();
  // Two accumulated micro-batches of scale 0.5 on the same data give the same gradient.
  p.zero_grads();
  for (int i = 0; i < 2; ++i) {
    model.forward(inputs.data(), targets.data(), shape);
    model.backward(0.5);
  }
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(p.grads()[i], once[i], 1e-12) << i;
}

TEST(ModelInit, DependsOnSeedAndNameOnly) {
  const auto m = tiny_moe_model();
  Model<float> a(m, 42), b(m, 42), c(m, 43);
  EXPECT_EQ(a.parameters().values(), b.parameters().values());
  EXPECT_NE(a.parameters().values(), c.parameters().values());
  // A parameter's initial values do not depend on what was declared before it.
  auto deeper = m;
  deeper.layers = 3;
  Model<float> d(deeper, 42);
  const auto& ea = a.parameters().entries();
  const auto& ed = d.parameters().entries();
  ASSERT_EQ(ea[1].name, ed[1].name);
  EXPECT_EQ(ea[1].name, "blocks.0.norm1");
  const auto& head_a = ea.back();
  const auto& head_d = ed.back();
  ASSERT_EQ(head_a.name, "head");
  // Same name, same values (the head is declared after a different number of blocks).
  for (int64_t i = 0; i < head_a.size; ++i) {
    ASSERT_EQ(a.parameters().values()[head_a.offset + i], d.parameters().values()[head_d.offset + i]);
  }
}

TEST(ModelCounts, ActiveParametersCountTopKOfRoutedExperts) {
  const auto m = tiny_moe_model();
  Model<float> model(m, 1);
  const auto c = model.count_parameters();
  const int64_t routed = 3 * m.moe.routed_experts * m.moe.intermediate * m.hidden;
  EXPECT_EQ(c.total - c.active, routed - routed / m.moe.routed_experts * m.moe.top_k);
  EXPECT_EQ(c.total, model.parameters().total());
}

TEST(MoeBalancing, BiasMovesTowardBalance) {
  auto m = tiny_moe_model();
  Model<double> model(m, 9);
  auto* moe = model.moe_layers().at(0);
  const BatchShape shape{4, 8};
  const auto inputs = random_ids(shape.tokens(), 11, 21);
  model.forward(inputs.data(), inputs.data(), shape);
  const auto load = moe->load();
  int64_t total = 0;
  for (auto l : load) total += l;
  EXPECT_EQ(total, shape.tokens() * m.moe.top_k);  // dropless: every token reaches k experts
  const double mean = static_cast<double>(total) / static_cast<double>(load.size());
  moe->update_bias(0.01);
  for (size_t e = 0; e < load.size(); ++e) {
    const double expected = load[e] > mean ? -0.01 : load[e] < mean ? 0.01 : 0.0;
    EXPECT_DOUBLE_EQ(moe->bias()[e], expected) << "expert " << e;
    EXPECT_EQ(moe->load()[e], 0);  // counters reset for the next step
  }
}

TEST(ModelEvaluate, DoesNotCountExpertLoad) {
  const auto m = tiny_moe_model();
  Model<double> model(m, 9);
  const BatchShape shape{2, 5};
  const auto inputs = random_ids(shape.tokens(), 11, 2);
  model.evaluate(inputs.data(), inputs.data(), shape);
  for (auto l : model.moe_layers()[0]->load()) EXPECT_EQ(l, 0);
}

}  // namespace
}  // namespace baleine::model
