// Training FLOPs per token (trainer/cost/flops.h): a small MoE counted by hand, the MoE rule
// that only the top-k routed experts count, and DeepSeek-V3's config against the report's 37B
// activated parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "trainer/config/config.h"
#include "trainer/cost/flops.h"
#include "trainer/model/model.h"

namespace baleine::cost {
namespace {

config::ModelSection small_moe() {
  config::ModelSection m;
  m.vocab_size = 257;
  m.hidden = 32;
  m.layers = 3;
  m.heads = 4;
  m.intermediate = 64;
  m.dense_layers = 1;
  m.moe.routed_experts = 8;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 16;
  return m;
}

TEST(Flops, SmallMoeCountedByHand) {
  // d = 32. Per block: norms 2d = 64, attention 4d^2 = 4096. Dense MLP 3 x 32 x 64 = 6144.
  // One expert 3 x 16 x 32 = 1536; MoE block replicated: gate 8 x 32 = 256, shared 1536.
  // Embedding 257 x 32 = 8224; final norm 32 + head 8224.
  //   total  = 8224 + (4160 + 6144) + 2 x (4160 + 256 + 1536) + 8256 + 2 x 8 x 1536 = 63264
  //   active = the same with 2 x 2 experts instead of 2 x 8:                      = 44832
  //   matmul = active - embedding = 44832 - 8224                                   = 36608
  const FlopsPerToken f = flops_per_token(small_moe(), 64);
  EXPECT_EQ(f.total_params, 63264);
  EXPECT_EQ(f.active_params, 44832);
  EXPECT_EQ(f.matmul_params, 36608);
  EXPECT_EQ(f.dense, 6.0 * 36608);                 // 219648
  EXPECT_EQ(f.attention, 6.0 * 3 * 64 * 32);       // 36864
  EXPECT_EQ(f.total, 219648.0 + 36864.0);
  EXPECT_EQ(f.formula,
            "6 x 36.61K matmul parameters + 6 x 3 layers x 64 seq x 32 hidden (causal "
            "attention) = 256.5 kFLOP/token");
  // The total is what the model allocates (an independent count: the parameter store).
  model::Model<float> built(small_moe(), 1);
  EXPECT_EQ(f.total_params, static_cast<double>(built.parameters().total()));
}

TEST(Flops, MoeCountsOnlyTheTopKRoutedExperts) {
  config::ModelSection m = small_moe();
  const FlopsPerToken base = flops_per_token(m, 64);
  const double per_expert = 3.0 * m.moe.intermediate * m.hidden;
  const double moe_layers = static_cast<double>(m.layers - m.dense_layers);

  // Four times the routed experts at the same top-k: only the gate grows (experts x hidden
  // per MoE layer); the total grows by every new expert.
  m.moe.routed_experts = 32;
  const FlopsPerToken more_experts = flops_per_token(m, 64);
  EXPECT_EQ(more_experts.matmul_params - base.matmul_params, moe_layers * 24 * m.hidden);
  EXPECT_EQ(more_experts.total_params - base.total_params,
            moe_layers * 24 * (per_expert + m.hidden));

  // One more expert per token: one more expert's FLOPs per MoE layer.
  m = small_moe();
  m.moe.top_k = 3;
  const FlopsPerToken deeper = flops_per_token(m, 64);
  EXPECT_EQ(deeper.dense - base.dense, 6.0 * moe_layers * per_expert);
  EXPECT_EQ(deeper.total_params, base.total_params);

  // The attention term grows with the sequence; the parameter term does not.
  const FlopsPerToken longer = flops_per_token(small_moe(), 128);
  EXPECT_EQ(longer.dense, base.dense);
  EXPECT_EQ(longer.attention, 2 * base.attention);
}

// DeepSeek-V3 (arXiv:2412.19437, §4.2): 671B parameters, 37B activated per token. baleine's
// attention is MHA, not MLA, so its count runs about 1.1B higher; the issue asks for the
// active count within 3% of 37B.
TEST(Flops, DeepSeekV3ConfigLandsWithinThreePercentOf37B) {
  const config::RunConfig c =
      config::load_config(std::string(BALEINE_SOURCE_DIR) + "/configs/deepseek-v3-671b.yaml");
  const FlopsPerToken f = flops_per_token(c.model, c.train.seq_len);
  EXPECT_LT(std::fabs(f.matmul_params / 37e9 - 1), 0.03) << f.matmul_params;
  EXPECT_LT(std::fabs(f.active_params / 37e9 - 1), 0.05) << f.active_params;
  EXPECT_LT(std::fabs(f.total_params / 671e9 - 1), 0.01) << f.total_params;
  // 6 x 37.75B + 6 x 61 x 4096 x 7168 = 226.5G + 10.75G FLOP per token.
  EXPECT_NEAR(f.total / 1e9, 237.2, 0.1);
}

}  // namespace
}  // namespace baleine::cost
