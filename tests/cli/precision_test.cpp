// precision.compute end to end (issue 5): FP8 and BF16 Linears train the same numbers on any
// layout, print what every Linear runs in, and report the bytes FP8 saves.
//
// Layouts. Quantization tiles never cross what a layout splits: activation and gradient
// tiles are rows, weight blocks are whole parameters, the Wgrad tiles run along one
// micro-batch's tokens (an expert's along one source rank's rows), and the EP wire encoding is
// applied on one rank too. So PP=2 1F1B reproduces one process bit for bit, and PP=2 × EP=2
// DualPipeV × DP=2 computes step 1 bit for bit and then differs only by the order of its
// gradient sums (pipeline_equivalence_test.cpp). FP8 amplifies that reordering: a weight one
// FP32 ulp away moves a value across an FP8 rounding boundary now and then, a 2^-4 jump where
// FP32 had 2^-24. Measured 2026-11-23 on two versions of the corpus (the checkout's own text):
// losses within 5.8e-4 and 9.8e-4 relative over 20 steps (FP32:
// 5.5e-6), parameters within 0.036 and 0.014 (FP32: 1e-4; AdamW moves each by up to lr = 0.01 a step, so
// a few sign flips of a small gradient do that). The loss bound leaves a margin of ~5; a wrong
// scale, tile or hand-off moves the losses by 1e-2 and more.
#include <cstdio>

#include "tests/cli/equivalence_support.h"

namespace baleine::testing {
namespace {

class PrecisionRuns : public EquivalenceTest {
 protected:
  void adjust(std::string& yaml) override {
    yaml.replace(yaml.find("layers: 2"), 9, "layers: 4");  // DualPipeV on 2 ranks: 4 stages
    yaml.replace(yaml.find("micro_batch: 2"), 14, "micro_batch: 1");
  }

  // A number from the first line of a run's metrics.jsonl.
  int64_t first_step(const std::string& run, const std::string& key) {
    std::ifstream in(dir_ + "/" + run + "/metrics.jsonl");
    std::string line;
    std::getline(in, line);
    const auto at = line.find("\"" + key + "\":");
    EXPECT_NE(at, std::string::npos) << key << " in " << line;
    return at == std::string::npos ? -1 : std::stoll(line.substr(at + key.size() + 3));
  }
};

TEST_F(PrecisionRuns, Fp8TrainsTheSameNumbersOnEveryLayout) {
  const std::string fp8 = "--set precision.compute=fp8 ";
  run("single", 1, fp8);
  // With dp and ep the sums are reordered, and under FP8 a sum that differs in its last bit
  // can quantize to the neighbouring E4M3 code (1/8 apart), so layouts drift apart faster than
  // in FP32. Measured worst over 20 steps: 9.0e-3 of the loss, 2.7e-2 of a parameter (the
  // corpus is the checkout's own sources, so the exact figure moves as the code grows).
  constexpr double kBitwise = 0, kReorderedParams = 0.1, kReorderedLoss = 2e-2;
  expect_same_as_single_process(
      run("1f1b-pp2", 2, fp8 + "--set parallel.pp=2 --set parallel.schedule=1f1b"), kBitwise,
      kBitwise);
  expect_same_as_single_process(run("dualpipev-pp2-ep2", 4,
                                    fp8 + "--set parallel.pp=2 --set parallel.schedule=dualpipev "
                                          "--set parallel.dp=2 --set parallel.ep=2"),
                                kReorderedParams, kReorderedLoss, Routing::kMayDiffer);
  EXPECT_EQ(losses(dir_ + "/dualpipev-pp2-ep2/metrics.jsonl").front(),
            losses(dir_ + "/single/metrics.jsonl").front())
      << "step 1 sees the same weights and the same quantization on every layout";
  // And FP8 is not FP32: the same run in FP32 ends elsewhere.
  run("fp32", 1, "");
  const auto a = losses(dir_ + "/single/metrics.jsonl"), b = losses(dir_ + "/fp32/metrics.jsonl");
  EXPECT_NE(a.back(), b.back());
  EXPECT_NEAR(a.back(), b.back(), 0.05 * b.back()) << "FP8 trains about as well";
}

TEST_F(PrecisionRuns, Fp8HalvesTheDispatchAndShrinksTheActivationCache) {
  const std::string ep2 = " --set parallel.dp=2 --set parallel.ep=2";
  for (const char* compute : {"fp32", "bf16", "fp8"}) {
    run(compute, 2, std::string("--set train.steps=1 --set train.lr.warmup_steps=0 ") +
                         "--set precision.compute=" + compute + ep2);
  }
  // Dropless: every step dispatches tokens × top_k rows per MoE layer, whatever the routing:
  // 8 sequences × 32 tokens × 2 × 3 MoE layers = 1536 rows of hidden 32, as FP32 (128 B),
  // BF16 (64 B) or FP8 (32 codes + 1 scale exponent byte). The combine is BF16 under both.
  constexpr int64_t kRows = 8 * 32 * 2 * 3;
  EXPECT_EQ(first_step("fp32", "dispatch_bytes"), kRows * 128);
  EXPECT_EQ(first_step("bf16", "dispatch_bytes"), kRows * 64);
  EXPECT_EQ(first_step("fp8", "dispatch_bytes"), kRows * 33);
  EXPECT_EQ(first_step("fp8", "combine_bytes"), kRows * 64);

  // The Linears' saved inputs, per token (hidden 32, MLP width 64, expert width 32, top-2):
  //   dense block: attention x, o (32 each), mlp x (32), h (64)            = 160 values
  //   MoE block:   attention x, o, gate x, shared x, shared h (32 each),
  //                2 expert rows of x and of h (64 each)                   = 288 values
  // BF16 keeps 2 bytes a value. FP8 keeps 1 byte plus one FP32 scale per row tile (a tile is
  // min(width, 128) wide: 4/32 B a value at width 32, 4/64 at 64 — 4/128 at real widths);
  // the gate's input stays BF16. Per token: 32·1.125 ×3 + 64·1.0625 = 176 (dense) and
  // 32·1.125 ×4 + 32·2 + 64·1.125 ×2 = 352 (MoE), over 8 × 32 tokens.
  constexpr int64_t kTokens = 8 * 32;
  const int64_t fp32 = first_step("fp32", "activation_cache_bytes");
  const int64_t bf16 = first_step("bf16", "activation_cache_bytes");
  const int64_t fp8 = first_step("fp8", "activation_cache_bytes");
  EXPECT_EQ(bf16, kTokens * 2 * (160 + 3 * 288));
  EXPECT_EQ(fp32, 2 * bf16);
  EXPECT_EQ(fp8, kTokens * (176 + 3 * 352));
  std::printf("Linear activation cache: fp32 %lld, bf16 %lld, fp8 %lld bytes (fp8/bf16 %.3f)\n",
              static_cast<long long>(fp32), static_cast<long long>(bf16),
              static_cast<long long>(fp8), static_cast<double>(fp8) / static_cast<double>(bf16));
}

TEST_F(PrecisionRuns, TheStartBannerNamesEveryLinearsFormat) {
  const auto r = run_baleine("train " + config_ + " --set run.dir=" + dir_ +
                             "/banner --set train.steps=1 --set train.lr.warmup_steps=0 "
                             "--set precision.compute=fp8 "
                             "--set precision.fp8.high_precision_blocks=0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* line :
       {"precision: Linears fp8, AdamW moments fp32",
        "block 0     attention.{wq,wk,wv,wo}        bf16",
        "blocks 1-3  attention.{wq,wk,wv,wo}        fp8 e4m3 (x,dy 1x128, W 128x128, Wgrad 128x1)",
        "block 0     mlp.{w1,w3,w2}                 bf16",
        "blocks 1-3  moe.gate                       bf16",
        "blocks 1-3  moe.experts.{0..7}.{w1,w3,w2}  fp8 e4m3",
        "EP wire: dispatch fp8 e4m3 (33 B/row", "memory per step"}) {
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
}

}  // namespace
}  // namespace baleine::testing
