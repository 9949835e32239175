// Memory per rank (trainer/cost/memory_plan.h) against what the model really allocates: the
// activation estimate against Model::take_activation_bytes() after a real forward (FP32, BF16
// and FP8 Linears), the parameters against the ParameterStore of whole models and of pipeline
// parts, the optimizer under ZeRO-1 against the store's regions, and the schedule's peak.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "parallel/stage_assignment.h"
#include "tests/gradcheck.h"
#include "trainer/config/config.h"
#include "trainer/cost/memory_plan.h"
#include "trainer/model/model.h"

namespace baleine::cost {
namespace {

// Sizes chosen so no dimension is a multiple of another's tile by accident: expert width 24 is
// one and a half FP8 tiles of 16, so the per-tile scale count is rounded up.
config::ModelSection small_moe() {
  config::ModelSection m;
  m.vocab_size = 257;
  m.hidden = 32;
  m.layers = 3;
  m.heads = 4;
  m.intermediate = 48;
  m.dense_layers = 1;
  m.moe.routed_experts = 6;
  m.moe.shared_experts = 2;
  m.moe.top_k = 2;
  m.moe.intermediate = 24;
  return m;
}

config::PrecisionSection precision(const std::string& compute) {
  config::PrecisionSection p;
  p.compute = compute;
  p.fp8.tile = 16;
  p.fp8.high_precision_blocks = {2};  // one MoE block's Linears stay BF16 under fp8
  return p;
}

config::RunConfig config_of(const std::string& yaml_extra) {
  return config::load_config_from_string(
      "data:\n  train: shards/train\n"
      "model:\n  hidden: 32\n  layers: 4\n  heads: 4\n  intermediate: 48\n  dense_layers: 1\n"
      "  moe:\n    routed_experts: 8\n    shared_experts: 1\n    top_k: 2\n"
      "    intermediate: 24\n"
      "train:\n  micro_batch: 2\n  seq_len: 16\n" + yaml_extra,
      "m.yaml");
}

const MemoryComponent& component(const RankMemory& rank, const std::string& name) {
  for (const MemoryComponent& c : rank.components) {
    if (c.name == name) return c;
  }
  ADD_FAILURE() << "no component " << name;
  static MemoryComponent none;
  return none;
}

// The estimate counts the same buffers the model's layers report, so it must equal them to
// the byte: tolerance zero. A layer that starts keeping something new fails this test, which
// is the point: the plan would otherwise silently go stale.
TEST(MemoryPlan, ActivationEstimateEqualsWhatAForwardKeeps) {
  const config::ModelSection m = small_moe();
  const model::BatchShape shape{3, 10};
  for (const char* compute : {"fp32", "bf16", "fp8"}) {
    SCOPED_TRACE(compute);
    const config::PrecisionSection p = precision(compute);
    model::Model<float> built(m, 5, {}, model::plan_precision(p));
    const auto inputs = testing::random_ids(shape.tokens(), 257, 11);
    const auto targets = testing::random_ids(shape.tokens(), 257, 12);
    built.forward(inputs.data(), targets.data(), shape);
    const model::ActivationBytes kept = built.take_activation_bytes();

    const parallel::StageLayers whole = parallel::assign_layers(m.layers, 1).front();
    const ActivationEstimate e = estimate_activations(m, p, whole, shape.batch, shape.seq, 1);
    EXPECT_EQ(e.linear_inputs, static_cast<double>(kept.linear_inputs));
    EXPECT_EQ(e.block_other, static_cast<double>(kept.other));
    // The attention log-sum-exps alone: one float per block (3), sequence (3), head (4) and
    // position (10); no longer the seq x seq probabilities.
    EXPECT_EQ(e.attention_lse, 3.0 * 3 * 4 * 10 * 4);
    // Around the blocks: 4 stream buffers of 30 x 32 floats; ids, targets, final norm output,
    // rstd, logits, log-sum-exp.
    EXPECT_EQ(e.stream, 4.0 * 30 * 32 * 4);
    EXPECT_EQ(e.ends, 30.0 * 4 + 30.0 * 4 + 4.0 * (30 * 32 + 30 + 30 * 257 + 30));
  }
  // FP8 caches one byte per value where FP32 caches four: the Linear inputs shrink by almost 4.
  const parallel::StageLayers whole = parallel::assign_layers(m.layers, 1).front();
  config::PrecisionSection all_fp8 = precision("fp8");
  all_fp8.fp8.high_precision_blocks.clear();
  const double ratio = estimate_activations(m, precision("fp32"), whole, 3, 10, 1).linear_inputs /
                       estimate_activations(m, all_fp8, whole, 3, 10, 1).linear_inputs;
  EXPECT_GT(ratio, 3.0);
  EXPECT_LT(ratio, 4.0);
}

// Every stage's parameters are what a Model holding exactly those stages allocates: DualPipeV
// on 2 ranks folds 4 stages into a V, rank 0 holding stages 0 and 3 (embedding and head).
TEST(MemoryPlan, StageParametersEqualTheAllocatedStore) {
  config::ModelSection m = small_moe();
  m.layers = 5;
  const auto stages = parallel::assign_layers(m.layers, 4);
  for (const std::vector<int>& held : {std::vector<int>{0, 3}, std::vector<int>{1, 2},
                                       std::vector<int>{0}, std::vector<int>{3}}) {
    std::vector<parallel::StageLayers> parts;
    int64_t planned = 0;
    for (int s : held) {
      parts.push_back(stages[static_cast<size_t>(s)]);
      planned += stage_parameters(m, stages[static_cast<size_t>(s)], 1).total();
    }
    model::Model<float> built(m, 3, {}, parts);
    EXPECT_EQ(planned, built.parameters().total()) << "stages " << held.front();
  }
  // Expert parallelism divides only the routed experts.
  const StageParameters one = stage_parameters(m, stages[1], 1);
  const StageParameters three = stage_parameters(m, stages[1], 3);
  EXPECT_EQ(three.replicated, one.replicated);
  EXPECT_EQ(three.expert * 3, one.expert);
}

TEST(MemoryPlan, WeightsAndGradientsAreTheStoreInFp32) {
  const config::RunConfig c = config_of("");
  const MemoryPlan plan = plan_memory(c);
  ASSERT_EQ(plan.ranks.size(), 1u);
  model::Model<float> built(c.model, 1);
  const double bytes = 4.0 * static_cast<double>(built.parameters().total());
  EXPECT_EQ(component(plan.worst(), "weights").bytes, bytes);
  EXPECT_EQ(component(plan.worst(), "gradients").bytes, bytes);
  EXPECT_EQ(component(plan.worst(), "optimizer").bytes, 2 * bytes);  // FP32 m and v
  EXPECT_EQ(plan.worst().peak_in_flight, 1);
  EXPECT_EQ(component(plan.worst(), "activations").bytes,
            plan.worst().per_micro_batch.total());
  double sum = 0;
  for (const MemoryComponent& m : plan.worst().components) sum += m.bytes;
  EXPECT_EQ(plan.worst().total_bytes, sum);
}

// ZeRO-1 shards AdamW's moments: the replicated region over dp, the expert region over the
// dp / ep ranks that hold the same experts. The regions are read from a built model's store.
TEST(MemoryPlan, ZeroOneShardsTheMomentsOverTheirGroups) {
  const config::RunConfig c = config_of(
      "  global_batch: 8\nparallel:\n  dp: 4\n  ep: 2\n  zero: 1\n"
      "precision:\n  optimizer_state: bf16\n");
  const MemoryPlan plan = plan_memory(c);
  model::Model<float> built(c.model, 1);  // every expert: the ep = 1 layout
  const double replicated = static_cast<double>(
      built.parameters().region(model::Placement::kReplicated).size);
  const double experts_here =
      static_cast<double>(built.parameters().region(model::Placement::kExpert).size) / 2;
  EXPECT_EQ(plan.worst().parameters.total(), replicated + experts_here);
  const double updated = std::ceil(replicated / 4) + std::ceil(experts_here / 2);
  EXPECT_EQ(component(plan.worst(), "optimizer").bytes, 2 * 2 * updated);  // BF16 m and v
  EXPECT_EQ(component(plan.worst(), "ZeRO-1 staging").bytes,
            4 * (replicated + experts_here + updated));
}

// With a pipeline the activations are the schedule's peak times one micro-batch: 1F1B holds
// PP micro-batches on its first rank (the published figure), the last rank one.
TEST(MemoryPlan, PipelinePeakMultipliesTheActivations) {
  const config::RunConfig c = config_of(
      "  global_batch: 8\nparallel:\n  pp: 2\n  schedule: 1f1b\n");
  const MemoryPlan plan = plan_memory(c);
  ASSERT_EQ(plan.ranks.size(), 2u);
  EXPECT_EQ(plan.ranks[0].peak_in_flight, 2);
  EXPECT_EQ(plan.ranks[1].peak_in_flight, 1);
  EXPECT_EQ(plan.ranks[0].holds, "stage 0 (embedding, blocks 0-1)");
  EXPECT_EQ(plan.ranks[1].holds, "stage 1 (blocks 2-3, head)");
  for (const RankMemory& r : plan.ranks) {
    EXPECT_EQ(component(r, "activations").bytes, r.peak_in_flight * r.per_micro_batch.total());
  }
  const int worst = plan.ranks[0].total_bytes > plan.ranks[1].total_bytes ? 0 : 1;
  EXPECT_EQ(plan.most_loaded, worst);

  // DualPipeV on 2 ranks: rank 0 holds stages 0 and 3 of the V and peaks at PP + 1 = 5
  // (PP = 4 stages), the published DualPipe figure.
  const config::RunConfig v = config_of(
      "  global_batch: 8\nparallel:\n  pp: 2\n  schedule: dualpipev\n");
  const MemoryPlan vplan = plan_memory(v);
  EXPECT_EQ(vplan.ranks[0].holds, "stage 0 (embedding, block 0) + stage 3 (block 3, head)");
  EXPECT_EQ(vplan.ranks[0].peak_in_flight, 5);
}

}  // namespace
}  // namespace baleine::cost
