// `baleine plan`'s arithmetic (trainer/cost/plan.h): DeepSeek-V3's three phases reproduce
// Table 1 (arXiv:2412.19437) at V3's own rates; every throughput source gives back what it was
// given (MFU <-> tokens/s); the token budget's sources and their order; the planned report row.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/config/gpu_table.h"
#include "trainer/cost/plan.h"
#include "trainer/cost/units.h"

namespace baleine::cost {
namespace {

config::RunConfig v3(const std::string& file, const std::vector<std::string>& overrides = {}) {
  return config::load_config(std::string(BALEINE_SOURCE_DIR) + "/configs/" + file, overrides);
}

// A small model on an A100-80 at $1.5 per hour (no FP8 on Ampere).
config::RunConfig small(const std::vector<std::string>& overrides = {}) {
  return config::load_config_from_string(
      "data:\n  train: shards/train\n"
      "model:\n  hidden: 64\n  layers: 2\n  heads: 4\n  intermediate: 128\n  dense_layers: 1\n"
      "  moe:\n    routed_experts: 4\n    shared_experts: 1\n    top_k: 2\n"
      "    intermediate: 32\n"
      "train:\n  steps: 50\n  micro_batch: 4\n  global_batch: 16\n  seq_len: 64\n"
      "parallel:\n  dp: 4\n"
      "cost:\n  gpu: A100-80\n  usd_per_gpu_hour: 1.5\n",
      "s.yaml", overrides);
}

// Relative tolerance for figures that are products of a few doubles.
constexpr double kRel = 1e-12;

TEST(Plan, DeepSeekV3PretrainingReproducesTableOne) {
  const config::RunConfig c = v3("deepseek-v3-671b.yaml");
  const Plan plan = make_plan(c, {});
  EXPECT_EQ(plan.world, 2048);
  EXPECT_EQ(plan.tokens, 14.8e12);
  EXPECT_EQ(plan.tokens_source, "cost.token_budget");
  EXPECT_NEAR(plan.device_hours, 2664e3, 2664e3 * kRel);
  EXPECT_NEAR(plan.usd, 5.328e6, 5.328e6 * kRel);
  EXPECT_EQ(format_hours(plan.device_hours), "2664K");
  EXPECT_EQ(format_usd(plan.usd), "$5.328M");
  // 2664K hours on 2048 GPUs: V3 reports 3.7 days per trillion tokens (§1), 54.8 for 14.8T.
  EXPECT_NEAR(plan.wall_days, 2664e3 / 2048 / 24, 1e-9);
  // V3's rate implies about 37% of the H800's BF16 peak by this FLOP count, half that of FP8.
  EXPECT_NEAR(plan.mfu_bf16, 0.370, 0.005);
  EXPECT_NEAR(plan.mfu_fp8, plan.mfu_bf16 * 989.5 / 1979.0, 1e-12);
  // Not the 80 GB of an H800: 290 GB on the most loaded rank, 243 GB of it the activations of
  // DualPipe's 17 micro-batches in flight.
  EXPECT_FALSE(plan.fits);
}

TEST(Plan, DeepSeekV3LaterPhasesReproduceTableOne) {
  const Plan extension = make_plan(v3("deepseek-v3-671b-context-extension.yaml"), {});
  EXPECT_NEAR(extension.device_hours, 119e3, 119e3 * 1e-9);
  EXPECT_EQ(extension.tokens, 125829120000.0);
  EXPECT_EQ(format_hours(extension.device_hours), "119K");
  const Plan post = make_plan(v3("deepseek-v3-671b-post-training.yaml"), {});
  EXPECT_NEAR(post.device_hours, 5e3, 5e3 * 1e-9);
  EXPECT_EQ(format_hours(post.device_hours), "5K");
  const Plan pre = make_plan(v3("deepseek-v3-671b.yaml"), {});
  const double total = pre.device_hours + extension.device_hours + post.device_hours;
  EXPECT_EQ(format_hours(total), "2788K");
  EXPECT_EQ(format_usd(pre.usd + extension.usd + post.usd), "$5.576M");
}

TEST(Plan, MfuAndTokensPerSecondAreTheSameThroughputTwoWays) {
  const config::RunConfig c = small();
  PlanOptions o;
  o.mfu = 0.4;
  const Plan by_mfu = make_plan(c, o);
  const double peak = 312e12;  // A100 BF16 dense
  EXPECT_NEAR(by_mfu.tokens_per_device_s, 0.4 * peak / by_mfu.flops.total,
              by_mfu.tokens_per_device_s * kRel);
  EXPECT_NEAR(by_mfu.mfu_bf16, 0.4, 1e-12);
  EXPECT_EQ(by_mfu.mfu_fp8, 0);  // fp32 compute, and Ampere has no FP8
  EXPECT_EQ(by_mfu.throughput_source, "--mfu = 0.4 of the BF16 dense peak");

  o = {};
  o.tokens_per_gpu_s = by_mfu.tokens_per_device_s;
  const Plan by_rate = make_plan(c, o);
  EXPECT_NEAR(by_rate.mfu_bf16, 0.4, 1e-12);
  EXPECT_NEAR(by_rate.device_hours, by_mfu.device_hours, by_mfu.device_hours * kRel);

  // GPU-hours per trillion tokens: hours = tokens / 1e12 x rate, whatever the model.
  o = {};
  o.gpu_hours_per_trillion_tokens = 1234;
  o.tokens = 3e9;
  const Plan by_hours = make_plan(c, o);
  EXPECT_NEAR(by_hours.device_hours, 3e9 / 1e12 * 1234, 1e-9);
  EXPECT_NEAR(by_hours.usd, by_hours.device_hours * 1.5, 1e-9);
  EXPECT_NEAR(by_hours.wall_days, by_hours.device_hours / 4 / 24, 1e-12);

  o.mfu = 0.3;  // two throughputs at once: the CLI refuses them before this
  EXPECT_THROW(make_plan(c, o), std::invalid_argument);
}

TEST(Plan, ThroughputAndTokenSourcesInTheirOrder) {
  // Config: cost.plan.gpu_hours_per_trillion_tokens beats tokens_per_gpu_s beats mfu.
  Plan p = make_plan(small({"cost.plan.mfu=0.5", "cost.plan.tokens_per_gpu_s=1000",
                            "cost.plan.gpu_hours_per_trillion_tokens=2000"}),
                     {});
  EXPECT_EQ(p.throughput_source, "cost.plan.gpu_hours_per_trillion_tokens = 2000");
  p = make_plan(small({"cost.plan.mfu=0.5", "cost.plan.tokens_per_gpu_s=1000"}), {});
  EXPECT_EQ(p.throughput_source, "cost.plan.tokens_per_gpu_s = 1000");
  EXPECT_EQ(p.tokens_per_device_s, 1000);
  p = make_plan(small({"cost.plan.mfu=0.5"}), {});
  EXPECT_NEAR(p.mfu_bf16, 0.5, 1e-12);
  // A flag beats the config.
  PlanOptions o;
  o.tokens_per_gpu_s = 77;
  p = make_plan(small({"cost.plan.gpu_hours_per_trillion_tokens=2000"}), o);
  EXPECT_EQ(p.tokens_per_device_s, 77);

  // Tokens: --tokens, else cost.token_budget, else steps x global_batch x seq_len.
  p = make_plan(small(), {});
  EXPECT_EQ(p.tokens, 50.0 * 16 * 64);
  EXPECT_EQ(p.tokens_source, "train.steps x global_batch x seq_len = 50 x 16 x 64");
  p = make_plan(small({"cost.token_budget=1e9"}), {});
  EXPECT_EQ(p.tokens, 1e9);
  o = {};
  o.tokens = 2e9;
  p = make_plan(small({"cost.token_budget=1e9"}), o);
  EXPECT_EQ(p.tokens, 2e9);
  EXPECT_EQ(p.tokens_source, "--tokens");
}

TEST(Plan, PeakOverrideAndFp8Peak) {
  PlanOptions o;
  o.tokens_per_gpu_s = 1e4;
  const Plan table = make_plan(small({"cost.gpu=H100-SXM", "precision.compute=fp8"}), o);
  const Plan custom =
      make_plan(small({"cost.gpu=H100-SXM", "precision.compute=fp8", "cost.peak_tflops=500"}), o);
  EXPECT_NEAR(custom.mfu_bf16 * 500, table.mfu_bf16 * 989.5, 1e-12);
  EXPECT_NEAR(table.mfu_fp8 * 1979, table.mfu_bf16 * 989.5, 1e-12);
  const Plan bf16 = make_plan(small({"cost.gpu=H100-SXM", "precision.compute=bf16"}), o);
  EXPECT_EQ(bf16.mfu_fp8, 0);  // only fp8 compute is measured against the FP8 peak
}

TEST(Plan, PlannedRowForTheReport) {
  const config::RunConfig c = small({"run.name=tiny", "cost.phase=post_training"});
  PlanOptions o;
  o.mfu = 0.25;
  const Plan plan = make_plan(c, o);
  const CostRow row = planned_row(c, plan);
  EXPECT_TRUE(row.planned);
  EXPECT_EQ(row.name, "tiny");
  EXPECT_EQ(row.phase, "post_training");
  EXPECT_EQ(row.source, "s.yaml");
  EXPECT_EQ(row.gpu, "A100-80");
  EXPECT_EQ(row.device_kind, "gpu");
  EXPECT_EQ(row.world, 4);
  EXPECT_EQ(row.device_hours, plan.device_hours);
  EXPECT_EQ(row.usd, plan.usd);
  EXPECT_EQ(row.tokens, plan.tokens);
  EXPECT_NEAR(row.mfu_bf16, 0.25, 1e-12);
  EXPECT_NEAR(row.tokens_per_device_hour * row.device_hours, row.tokens, row.tokens * kRel);
  EXPECT_NEAR(row.device_hours_per_trillion_tokens, row.device_hours / (row.tokens / 1e12),
              row.device_hours_per_trillion_tokens * kRel);
  EXPECT_NEAR(row.h800_factor, 312.0 / 989.5, 1e-15);
  EXPECT_NEAR(row.h800_equivalent_hours, row.device_hours * 312.0 / 989.5, 1e-15);
  EXPECT_EQ(row.projected_device_hours, row.device_hours);
  EXPECT_EQ(total_seconds(row.segment_hours), 0);  // a prediction has no segments
}

TEST(Plan, ReferenceRunsBesideThePlan) {
  const std::vector<ReferenceLine> lines = reference_lines(2.0, "context_extension");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].name, "DeepSeek-V3");
  EXPECT_EQ(format_hours(lines[0].gpu_hours_per_trillion_tokens), "180K");
  EXPECT_EQ(format_usd(lines[0].usd), "$5.576M");
  EXPECT_EQ(lines[1].name, "DeepSeek-V3 " + std::string("Context Extension"));
  EXPECT_EQ(lines[1].gpu_hours, 119e3);
  EXPECT_EQ(lines[1].gpu_hours_per_trillion_tokens, 0);  // V3 gives this phase no tokens
  // Llama 3.1 405B on H100 SXM: the same BF16 peak as an H800, so H800-equivalent hours equal
  // its hours; 30.84M hours over 15.6T tokens, all phases (the model card does not split).
  EXPECT_EQ(lines[2].name, "Llama 3.1 405B");
  EXPECT_EQ(lines[2].h800_equivalent_hours, 30.84e6);
  EXPECT_NEAR(lines[2].gpu_hours_per_trillion_tokens, 30.84e6 / 15.6, 1e-6);
  EXPECT_EQ(lines[2].per_trillion_basis, "all phases");
  EXPECT_EQ(format_usd(lines[2].usd), "$61.68M");
}

TEST(Plan, PrintedPlanShowsEverySection) {
  const config::RunConfig c = v3("deepseek-v3-671b.yaml");
  std::ostringstream out;
  print_plan(c, make_plan(c, {}), out);
  const std::string text = out.str();
  for (const char* part :
       {"total             672.1B", "matmul-active     37.75B",
        "6 x 37.75B matmul parameters + 6 x 61 layers x 4096 seq x 7168 hidden (causal "
        "attention) = 237.2 GFLOP/token",
        "2048 x H800 = pp 16 (dualpipe) x dp 128; ep 64; ZeRO-1", "weights ", "gradients ",
        "optimizer ", "BF16 AdamW m and v", "activations ", "WARNING: does not fit",
        "GPU-hours    2664K H800 GPU-hours", "cost         $5.328M at $2 per GPU-hour",
        "implied MFU  37.0% of the BF16 dense peak; 18.5% of the FP8 dense peak",
        "Llama 3.1 405B"}) {
    EXPECT_NE(text.find(part), std::string::npos) << "missing: " << part << "\n" << text;
  }
}

}  // namespace
}  // namespace baleine::cost
