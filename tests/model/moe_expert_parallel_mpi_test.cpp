// Expert parallelism against a single-rank reference, in double precision, on 2 and 4 ranks.
//
// Each rank feeds its own micro-batch through (a) a model whose routed experts are sharded over
// the world with tokens exchanged all-to-all, and (b) a full local reference model with the same
// weights. Tokens do not interact inside an MoE layer, so per rank the losses must agree, the
// replicated parameters' gradients must agree, and a sharded expert's gradient must equal the
// SUM over ranks of the reference gradients for that expert (its tokens came from every rank).
// Double precision and ~1e-12 tolerances: the two paths sum the same products in different
// orders (rows grouped by source rank), so only rounding of order 1e-16·|terms| may differ.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "parallel/comm.h"
#include "tests/gradcheck.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

using baleine::testing::random_ids;
using baleine::testing::random_vector;

config::ModelSection tiny(int64_t experts) {
  config::ModelSection m;
  m.vocab_size = 13;
  m.hidden = 8;
  m.heads = 2;
  m.layers = 3;
  m.dense_layers = 1;
  m.intermediate = 8;
  m.init_std = 0.3;
  m.moe.routed_experts = experts;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 4;
  m.moe.seq_aux_alpha = 0.01;
  return m;
}

struct Fixture {
  std::unique_ptr<parallel::Comm> world = parallel::make_mpi_world(60.0);
};

std::map<std::string, std::vector<double>> gradients_by_name(ParameterStore<double>& store) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& e : store.entries()) {
    out[e.name].assign(store.grads().begin() + e.offset, store.grads().begin() + e.offset + e.size);
  }
  return out;
}

// Runs the comparison with the given routing bias (the same on every rank) and Linear formats.
void expect_sharded_matches_full_model(parallel::Comm& world, const std::vector<double>& bias,
                                       const PrecisionPlan& precision = {}) {
  const int ranks = world.size(), me = world.rank();
  const int64_t experts = static_cast<int64_t>(bias.size());
  ASSERT_EQ(experts % ranks, 0);
  const auto m = tiny(experts);
  ModelParallelism par;
  par.ep_group = &world;
  par.expert_begin = me * (experts / ranks);
  Model<double> sharded(m, 77, par, parallel::assign_layers(m.layers, 1), precision);
  Model<double> reference(m, 77, {}, precision);
  for (auto* model : {&sharded, &reference}) {
    for (auto* moe : model->moe_layers()) moe->bias().assign(bias.begin(), bias.end());
  }

  const BatchShape shape{2, 6};
  auto batch_of = [&](int rank) {
    return std::make_pair(random_ids(shape.tokens(), 13, 100 + rank),
                          random_ids(shape.tokens(), 13, 200 + rank));
  };
  // Reference: every rank's batch through the full model, gradients summed over ranks.
  std::map<std::string, std::vector<double>> reference_sum, reference_mine;
  double reference_loss = 0;
  for (int r = 0; r < ranks; ++r) {
    const auto [inputs, targets] = batch_of(r);
    reference.parameters().zero_grads();
    const double loss = reference.forward(inputs.data(), targets.data(), shape).total();
    reference.backward(1.0);
    auto grads = gradients_by_name(reference.parameters());
    if (r == me) {
      reference_mine = grads;
      reference_loss = loss;
    }
    for (auto& [name, g] : grads) {
      auto& sum = reference_sum[name];
      sum.resize(g.size(), 0.0);
      for (size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
    }
  }

  const auto [inputs, targets] = batch_of(me);
  sharded.parameters().zero_grads();
  const double loss = sharded.forward(inputs.data(), targets.data(), shape).total();
  sharded.backward(1.0);
  EXPECT_NEAR(loss, reference_loss, 1e-12);

  for (const auto& e : sharded.parameters().entries()) {
    const bool expert = e.placement == Placement::kExpert;
    const auto& expected = expert ? reference_sum.at(e.name) : reference_mine.at(e.name);
    ASSERT_EQ(expected.size(), static_cast<size_t>(e.size)) << e.name;
    for (int64_t i = 0; i < e.size; ++i) {
      EXPECT_NEAR(sharded.parameters().grads()[e.offset + i], expected[i],
                  1e-12 * (1.0 + std::abs(expected[i])))
          << e.name << "[" << i << "] on rank " << me;
    }
  }
  // Dropless: this rank's experts received every row routed to them from every rank.
  int64_t received = 0;
  for (auto* moe : sharded.moe_layers()) received += moe->rows_received();
  int64_t total_received = received;
  world.allreduce_sum(&total_received, 1, parallel::DType::kInt64);
  EXPECT_EQ(total_received, int64_t{ranks} * shape.tokens() * m.moe.top_k * 2);  // 2 MoE layers
}

TEST(ExpertParallel, MatchesTheFullModelOnEveryRank) {
  Fixture f;
  // A non-zero bias, the same everywhere, so selection is not trivially balanced.
  expect_sharded_matches_full_model(*f.world, random_vector(8, 5, 0.3));
}

// In BF16 and FP8 the rows travel encoded (FP8 dispatch with power-of-two scales, BF16
// combine and backward moves), and the encoding is applied on one rank too, so sharding still
// changes nothing but the order of the cross-rank gradient sums: every quantization tile is a
// row, or (Wgrad, along tokens) one source rank's rows of one expert — the same rows as that
// rank's reference run.
TEST(ExpertParallel, Bf16AndFp8MatchTheFullModelOnEveryRank) {
  Fixture f;
  for (const char* compute : {"bf16", "fp8"}) {
    SCOPED_TRACE(compute);
    config::PrecisionSection p;
    p.compute = compute;
    expect_sharded_matches_full_model(*f.world, random_vector(8, 5, 0.3), plan_precision(p));
  }
}

TEST(ExpertParallel, RanksWhoseExpertsReceiveNoTokensAreANormalCase) {
  Fixture f;
  // A bias of +100 on experts 0 and 1 (both on rank 0) sends every token there: the other
  // ranks' experts receive zero rows, and their gradients must be exactly zero.
  std::vector<double> bias(8, 0.0);
  bias[0] = bias[1] = 100.0;
  expect_sharded_matches_full_model(*f.world, bias);
}

TEST(ExpertParallel, BitwiseDeterministicRunToRun) {
  Fixture f;
  const int ranks = f.world->size(), me = f.world->rank();
  const auto m = tiny(4 * ranks);
  ModelParallelism par{f.world.get(), me * 4};
  const BatchShape shape{2, 6};
  const auto inputs = random_ids(shape.tokens(), 13, 300 + me);
  std::vector<double> first;
  for (int run = 0; run < 2; ++run) {
    Model<double> model(m, 3, par);
    model.parameters().zero_grads();
    model.forward(inputs.data(), inputs.data(), shape);
    model.backward(1.0);
    if (run == 0) first = model.parameters().grads().to_host();
    else EXPECT_EQ(first, model.parameters().grads().to_host());
  }
}

}  // namespace
}  // namespace baleine::model
