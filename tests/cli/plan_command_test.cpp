// `baleine plan`: the shipped DeepSeek-V3 configs reproduce the report's Table 1 (2664K, 119K
// and 5K H800 GPU-hours, $5.328M for pre-training); flags change the budget and throughput;
// --report-dir writes a planned report; bad flags and values exit 2 with a hint.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>

#include "tests/cli/cli_support.h"

namespace baleine::testing {
namespace {

std::string config(const std::string& name) {
  return std::string(BALEINE_SOURCE_DIR) + "/configs/" + name;
}

// The value of the prediction line `label` ("GPU-hours", "cost"): the first word after it.
// The reference table below it holds the same figures for V3, so a test must read this line.
std::string prediction(const std::string& output, const std::string& label) {
  const std::regex line("\n  " + label + " +([^ \n]+)");
  std::smatch m;
  if (!std::regex_search(output, m, line)) return "(no '" + label + "' line)";
  return m[1];
}

TEST(PlanCommand, DeepSeekV3PretrainingReproducesTheReport) {
  const auto r = run_baleine("plan " + config("deepseek-v3-671b.yaml"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "GPU-hours"), "2664K") << r.output;
  EXPECT_EQ(prediction(r.output, "cost"), "$5.328M") << r.output;
  EXPECT_NE(r.output.find("prediction for 14.8T tokens (cost.token_budget)"), std::string::npos);
  EXPECT_NE(r.output.find("matmul-active     37.75B"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("memory per rank: pipeline rank"), std::string::npos);
  EXPECT_NE(r.output.find("DeepSeek-V3 Pre-Training"), std::string::npos);
}

TEST(PlanCommand, DeepSeekV3LaterPhasesReproduceTheReport) {
  auto r = run_baleine("plan " + config("deepseek-v3-671b-context-extension.yaml"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "GPU-hours"), "119K") << r.output;
  EXPECT_EQ(prediction(r.output, "cost"), "$238K") << r.output;
  r = run_baleine("plan " + config("deepseek-v3-671b-post-training.yaml"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "GPU-hours"), "5K") << r.output;
  EXPECT_EQ(prediction(r.output, "cost"), "$10K") << r.output;
}

TEST(PlanCommand, FlagsSetTheBudgetAndTheThroughput) {
  // One trillion tokens at V3's rate: 180K hours.
  auto r = run_baleine("plan " + config("deepseek-v3-671b.yaml") + " --tokens 1T");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "GPU-hours"), "180K") << r.output;
  EXPECT_NE(r.output.find("prediction for 1T tokens (--tokens)"), std::string::npos);
  r = run_baleine("plan " + config("deepseek-v3-671b.yaml") +
                  " --tokens=2e12 --gpu-hours-per-trillion-tokens 1000");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "GPU-hours"), "2K") << r.output;
  // 1000 tokens/s per device for 3.6e9 tokens: 1000 device-hours, $2000 at $2.
  r = run_baleine("plan " + config("deepseek-v3-671b.yaml") +
                  " --tokens 3.6e9 --tokens-per-gpu-s 1000");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "GPU-hours"), "1K") << r.output;
  EXPECT_EQ(prediction(r.output, "cost"), "$2K") << r.output;
  r = run_baleine("plan " + config("deepseek-v3-671b.yaml") + " --mfu 0.5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(prediction(r.output, "implied MFU"), "50.0%") << r.output;
  // --set reaches the config: the same model on B200s at $3.
  r = run_baleine("plan " + config("deepseek-v3-671b.yaml") +
                  " --set cost.gpu=B200 --set cost.usd_per_gpu_hour=3 --mfu 0.4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2048 x B200"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("at $3 per GPU-hour"), std::string::npos) << r.output;
}

TEST(PlanCommand, ReportDirGetsAPlannedReport) {
  const std::string dir = scratch_dir() + "/report";
  const auto r = run_baleine("plan " + config("deepseek-v3-671b.yaml") + " --report-dir " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* file : {"cost-report.md", "cost-report.json", "cost-report.svg"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + file)) << file << "\n" << r.output;
  }
}

// The README's recipe: plan V3's three phases into report dirs, then merge them with
// `baleine report` into Table 1: 2664K + 119K + 5K = 2788K H800 GPU-hours, $5.576M.
TEST(PlanCommand, ThreePlannedPhasesMergeIntoDeepSeekV3sTable1) {
  const std::string dir = scratch_dir();
  std::string inputs;
  for (const std::string phase : {"", "-context-extension", "-post-training"}) {
    const std::string out = dir + "/plan" + phase;
    const auto r = run_baleine("plan " + config("deepseek-v3-671b" + phase + ".yaml") +
                               " --report-dir " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    inputs += " " + out;
  }
  const auto merged = run_baleine("report" + inputs + " --output " + dir + "/total");
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_NE(merged.output.find("| in H800 GPU Hours | 2664K | 119K | 5K | 2788K |"),
            std::string::npos)
      << merged.output;
  EXPECT_NE(merged.output.find("| in USD | $5.328M | $238K | $10K | $5.576M |"),
            std::string::npos)
      << merged.output;
}

TEST(PlanCommand, BadFlagsAndValuesExit2WithAHint) {
  const std::string v3 = config("deepseek-v3-671b.yaml");
  struct Case {
    std::string args, message;
  };
  for (const Case& c : std::vector<Case>{
           {"plan", "missing CONFIG.yaml"},
           {"plan " + v3 + " --speed 3", "unknown option '--speed'"},
           {"plan " + v3 + " extra.yaml", "unexpected argument 'extra.yaml'"},
           {"plan " + v3 + " --tokens lots", "--tokens: 'lots' is not a positive number"},
           {"plan " + v3 + " --tokens -5", "--tokens: '-5' is not a positive number"},
           {"plan " + v3 + " --tokens", "--tokens needs a value"},
           {"plan " + v3 + " --mfu 1.5", "--mfu: 1.500000 is more than the whole peak"},
           {"plan " + v3 + " --mfu 0", "--mfu: '0' is not a positive number"},
           {"plan " + v3 + " --mfu 0.3 --tokens-per-gpu-s 100",
            "--tokens-per-gpu-s and --mfu both set the planning throughput"},
           {"plan " + v3 + " --set cost.gpu=H900", "cost.gpu: unknown device 'H900'"},
           {"plan " + v3 + " --set cost.plan.mfu=2", "cost.plan.mfu: must be in (0, 1]"},
           {"plan /nonexistent/x.yaml", "x.yaml"},
       }) {
    SCOPED_TRACE(c.args);
    const auto r = run_baleine(c.args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("HINT:"), std::string::npos) << r.output;
  }
  const auto help = run_baleine("plan --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("usage: baleine plan CONFIG.yaml"), std::string::npos);
}

}  // namespace
}  // namespace baleine::testing
