// A model cut into pipeline parts computes what the whole model computes. In one process and in
// double precision: parts held by different Model objects (as different pipeline ranks would),
// several micro-batches in flight, backwards in another order than the forwards, split into B
// and a later W, and one object holding two non-adjacent stages (DualPipeV's V). Every
// parameter's accumulated gradient and every loss must equal the whole model's: to 1e-12
// relative, since the only difference is the order of the micro-batch sums (exactly equal when
// the W order matches the whole model's micro-batch order).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/gradcheck.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

using baleine::testing::random_ids;

config::ModelSection four_block_model() {
  config::ModelSection m;
  m.vocab_size = 13;
  m.hidden = 8;
  m.heads = 2;
  m.layers = 4;
  m.dense_layers = 1;
  m.intermediate = 8;
  m.init_std = 0.3;
  m.moe.routed_experts = 4;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 4;
  m.moe.seq_aux_alpha = 0.05;
  return m;
}

constexpr int kMicroBatches = 3;
constexpr uint64_t kSeed = 21;
const BatchShape kShape{2, 5};

struct Batches {
  std::vector<std::vector<int32_t>> inputs, targets;
  Batches() {
    for (int m = 0; m < kMicroBatches; ++m) {
      inputs.push_back(random_ids(kShape.tokens(), 13, 100 + m));
      targets.push_back(random_ids(kShape.tokens(), 13, 200 + m));
    }
  }
};

using Gradients = std::map<std::string, std::vector<double>>;

Gradients gradients_by_name(Model<double>& model) {
  Gradients out;
  auto& p = model.parameters();
  for (const auto& e : p.entries()) {
    out[e.name].assign(p.grads().begin() + e.offset, p.grads().begin() + e.offset + e.size);
  }
  return out;
}

// The reference: the whole model, micro-batches one after the other.
double whole_model(const config::ModelSection& m, const Batches& b, Gradients* grads) {
  Model<double> model(m, kSeed);
  model.parameters().zero_grads();
  double total = 0;
  for (int i = 0; i < kMicroBatches; ++i) {
    total += model.forward(b.inputs[i].data(), b.targets[i].data(), kShape).total();
    model.backward(1.0 / kMicroBatches);
  }
  *grads = gradients_by_name(model);
  return total;
}

void expect_same_gradients(const Gradients& want, const std::vector<Model<double>*>& parts) {
  Gradients got;
  for (auto* model : parts) {
    for (auto& [name, values] : gradients_by_name(*model)) {
      ASSERT_TRUE(got.emplace(name, values).second) << name << " held twice";
    }
  }
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, values] : want) {
    const auto& other = got.at(name);
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_NEAR(other[i], values[i], 1e-12 * std::max(1.0, std::abs(values[i])))
          << name << "[" << i << "]";
    }
  }
}

// Three parts on two "ranks": stages {0, 2} on one object (a V), stage 1 on the other.
TEST(ModelParts, InterleavedSplitBackwardsMatchTheWholeModel) {
  const auto m = four_block_model();
  const Batches b;
  Gradients want;
  const double want_loss = whole_model(m, b, &want);

  const auto stages = parallel::assign_layers(m.layers, 3);  // blocks 2, 1, 1
  Model<double> outer(m, kSeed, {}, {stages[2], stages[0]});  // any order
  Model<double> middle(m, kSeed, {}, {stages[1]});
  outer.parameters().zero_grads();
  middle.parameters().zero_grads();
  const int first = outer.part_of_stage(0), last = outer.part_of_stage(2);
  ASSERT_EQ(middle.part_of_stage(1), 0);
  ASSERT_EQ(outer.part_of_stage(1), -1);

  const int64_t nd = kShape.tokens() * m.hidden;
  std::vector<std::vector<double>> a(kMicroBatches, std::vector<double>(nd)), c = a, da = a, dc = a;
  double loss = 0;
  for (int i = 0; i < kMicroBatches; ++i) {
    loss += outer.forward_part(first, i, b.inputs[i].data(), nullptr, nullptr, a[i].data(), kShape)
                .total();
    loss += middle.forward_part(0, i, nullptr, nullptr, a[i].data(), c[i].data(), kShape).total();
    loss += outer.forward_part(last, i, nullptr, b.targets[i].data(), c[i].data(), nullptr, kShape)
                .total();
  }
  EXPECT_EQ(outer.in_flight(), 2 * kMicroBatches);
  EXPECT_NEAR(loss, want_loss, 1e-12 * want_loss);

  const double scale = 1.0 / kMicroBatches;
  for (const int i : {2, 0, 1}) {  // backwards out of order, all split
    outer.backward_part(last, i, nullptr, dc[i].data(), scale, true);
    middle.backward_part(0, i, dc[i].data(), da[i].data(), scale, true);
    outer.backward_part(first, i, da[i].data(), nullptr, scale, true);
  }
  for (const int i : {1, 2, 0}) {  // W in yet another order
    outer.backward_weight_part(last, i);
    middle.backward_weight_part(0, i);
    outer.backward_weight_part(first, i);
  }
  EXPECT_EQ(outer.in_flight(), 0);
  EXPECT_EQ(middle.in_flight(), 0);
  expect_same_gradients(want, {&outer, &middle});
}

TEST(ModelParts, SplitBackwardLeavesWeightGradientsForW) {
  const auto m = four_block_model();
  const Batches b;
  Model<double> model(m, kSeed, {}, parallel::assign_layers(m.layers, 1));
  auto& p = model.parameters();
  p.zero_grads();
  model.forward_part(0, 0, b.inputs[0].data(), b.targets[0].data(), nullptr, nullptr, kShape);
  model.backward_part(0, 0, nullptr, nullptr, 1.0, true);
  // After B only the norm gains have gradients; every matrix waits for W.
  for (const auto& e : p.entries()) {
    double sum = 0;
    for (int64_t i = 0; i < e.size; ++i) sum += std::abs(p.grads()[e.offset + i]);
    const bool is_norm = e.name.find("norm") != std::string::npos;
    if (is_norm) EXPECT_GT(sum, 0) << e.name;
    else EXPECT_EQ(sum, 0) << e.name << " before W";
  }
  model.backward_weight_part(0, 0);
  for (const auto& e : p.entries()) {
    double sum = 0;
    for (int64_t i = 0; i < e.size; ++i) sum += std::abs(p.grads()[e.offset + i]);
    EXPECT_GT(sum, 0) << e.name << " after W";
  }
}

TEST(ModelParts, MisuseIsALogicError) {
  const auto m = four_block_model();
  const Batches b;
  Model<double> model(m, kSeed);
  model.forward_part(0, 4, b.inputs[0].data(), b.targets[0].data(), nullptr, nullptr, kShape);
  EXPECT_THROW(
      model.forward_part(0, 4, b.inputs[0].data(), b.targets[0].data(), nullptr, nullptr, kShape),
      std::logic_error);
  EXPECT_THROW(model.backward_part(0, 5, nullptr, nullptr, 1.0, false), std::logic_error);
  EXPECT_THROW(model.backward_weight_part(0, 4), std::logic_error);  // no split B ran
  const auto stages = parallel::assign_layers(m.layers, 2);
  EXPECT_THROW(Model<double>(m, kSeed, {}, {stages[0], stages[0]}), std::invalid_argument);
  Model<double> head_only(m, kSeed, {}, {stages[1]});
  EXPECT_THROW(head_only.forward(b.inputs[0].data(), b.targets[0].data(), kShape),
               std::logic_error);
}

TEST(ModelParts, ParameterCountFromTheConfigMatchesTheWholeModel) {
  auto m = four_block_model();
  const Model<double> whole(m, kSeed);
  const auto counts = whole.count_parameters();
  EXPECT_EQ(counts.total, whole.count_parameters().on_this_rank);
  EXPECT_EQ(counts.embedding, m.vocab_size * m.hidden);
  // Each MoE layer runs top_k of its routed experts per token.
  const int64_t per_expert = 3 * m.moe.intermediate * m.hidden;
  EXPECT_EQ(counts.total - counts.active,
            (m.layers - m.dense_layers) * (m.moe.routed_experts - m.moe.top_k) * per_expert);
  // A part holds a share of it.
  const auto stages = parallel::assign_layers(m.layers, 2);
  const Model<double> first(m, kSeed, {}, {stages[0]}), second(m, kSeed, {}, {stages[1]});
  EXPECT_EQ(first.count_parameters().on_this_rank + second.count_parameters().on_this_rank,
            counts.total);
  EXPECT_EQ(first.count_parameters().total, counts.total);
}

}  // namespace
}  // namespace baleine::model
