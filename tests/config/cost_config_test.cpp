// The cost and ledger sections, and the device table behind cost.gpu: defaults, YAML, every
// refused value with its place, key and hint, and the table's own consistency.
#include <set>
#include <string>
#include <vector>

#include "tests/config/config_test_support.h"
#include "trainer/config/gpu_table.h"

namespace baleine::config {
namespace {

using testing::contains;
using testing::expect_error;
using testing::kMinimal;
using testing::load;
using testing::load_error;
using testing::with;

// A whole cost section, one key per line: gpu on line 4, usd_per_gpu_hour 5, phase 6,
// token_budget 7, peak_tflops 8, gpu_hours_per_trillion_tokens 10, tokens_per_gpu_s 11, mfu 12,
// ledger.flush_every_s 14.
std::string cost_yaml(const std::string& gpu, const std::string& usd, const std::string& phase,
                      const std::string& budget, const std::string& peak,
                      const std::string& per_trillion, const std::string& rate,
                      const std::string& mfu, const std::string& flush) {
  return with("cost:\n  gpu: " + gpu + "\n  usd_per_gpu_hour: " + usd + "\n  phase: " + phase +
              "\n  token_budget: " + budget + "\n  peak_tflops: " + peak +
              "\n  plan:\n    gpu_hours_per_trillion_tokens: " + per_trillion +
              "\n    tokens_per_gpu_s: " + rate + "\n    mfu: " + mfu +
              "\nledger:\n  flush_every_s: " + flush + "\n");
}

std::string good(int field, const std::string& value) {
  std::vector<std::string> v = {"H800", "2.0", "pretraining", "14.8e12", "0",
                                "180000", "0", "0.35", "30"};
  v[static_cast<size_t>(field)] = value;
  return cost_yaml(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
}

TEST(CostConfig, Defaults) {
  const RunConfig c = load(kMinimal);
  EXPECT_EQ(c.cost.gpu, "cpu");
  EXPECT_EQ(c.cost.usd_per_gpu_hour, 2.0);
  EXPECT_EQ(c.cost.phase, "pretraining");
  EXPECT_EQ(c.cost.token_budget, 0);
  EXPECT_EQ(c.cost.peak_tflops, 0);
  EXPECT_EQ(c.cost.plan.gpu_hours_per_trillion_tokens, 0);
  EXPECT_EQ(c.cost.plan.tokens_per_gpu_s, 0);
  EXPECT_EQ(c.cost.plan.mfu, 0.35);
  EXPECT_EQ(c.ledger.flush_every_s, 30.0);
}

TEST(CostConfig, AGoodConfigLoadsWithEveryKeysLine) {
  const RunConfig c = load(good(0, "H800"));
  EXPECT_EQ(c.cost.gpu, "H800");
  EXPECT_EQ(c.cost.token_budget, 14.8e12);
  EXPECT_EQ(c.cost.plan.gpu_hours_per_trillion_tokens, 180000);
  EXPECT_EQ(c.where("cost.gpu"), "q.yaml:4");
  EXPECT_EQ(c.where("cost.plan.mfu"), "q.yaml:12");
  EXPECT_EQ(c.where("ledger.flush_every_s"), "q.yaml:14");
  for (const char* phase : {"pretraining", "context_extension", "post_training"}) {
    EXPECT_EQ(load(good(2, phase)).cost.phase, phase);
  }
  // The table is matched without regard to case; the value is kept as written.
  EXPECT_EQ(load(good(0, "h100-sxm")).cost.gpu, "h100-sxm");
}

TEST(CostConfig, UnknownDeviceNamesTheTable) {
  UserError e = load_error(good(0, "H80"));
  expect_error(e, "q.yaml:4", "cost.gpu", "unknown device 'H80'", "did you mean 'H800'?");
  EXPECT_TRUE(contains(e.hint(), "A100-80")) << e.hint();
  EXPECT_TRUE(contains(e.hint(), "cost.peak_tflops")) << e.hint();
  e = load_error(kMinimal, {"cost.gpu=rtx-4900"});
  expect_error(e, "--set cost.gpu=rtx-4900", "cost.gpu", "unknown device",
               "did you mean 'RTX-4090'?");
  e = load_error(good(0, "TPUv5"));
  expect_error(e, "q.yaml:4", "cost.gpu", "unknown device 'TPUv5'", "Choose one of: T4, A10");
  EXPECT_FALSE(contains(e.hint(), "did you mean")) << e.hint();
}

TEST(CostConfig, EveryRangeRuleNamesItsKey) {
  expect_error(load_error(good(1, "-1")), "q.yaml:5", "cost.usd_per_gpu_hour",
               "must be >= 0, got -1");
  expect_error(load_error(good(2, "pretrain")), "q.yaml:6", "cost.phase",
               "unknown value 'pretrain'", "Choose one of: pretraining, context_extension, "
               "post_training");
  expect_error(load_error(good(3, "-5")), "q.yaml:7", "cost.token_budget", "must be >= 0");
  expect_error(load_error(good(4, "-989.5")), "q.yaml:8", "cost.peak_tflops", "must be >= 0");
  expect_error(load_error(good(5, "-180000")), "q.yaml:10",
               "cost.plan.gpu_hours_per_trillion_tokens", "must be >= 0");
  expect_error(load_error(good(6, "-1")), "q.yaml:11", "cost.plan.tokens_per_gpu_s",
               "must be >= 0");
  expect_error(load_error(good(7, "0")), "q.yaml:12", "cost.plan.mfu", "must be in (0, 1], got 0",
               "cost.plan.mfu: 0.35");
  expect_error(load_error(good(7, "1.2")), "q.yaml:12", "cost.plan.mfu",
               "must be in (0, 1], got 1.2");
  expect_error(load_error(good(8, "0")), "q.yaml:14", "ledger.flush_every_s",
               "must be > 0, got 0");
  // The edges that are allowed.
  EXPECT_EQ(load(good(7, "1")).cost.plan.mfu, 1.0);
  EXPECT_EQ(load(good(1, "0")).cost.usd_per_gpu_hour, 0);
}

TEST(DeviceTable, EveryRowIsDenseCitedAndFindable) {
  std::set<std::string> names;
  for (const DeviceSpec& d : device_table()) {
    SCOPED_TRACE(d.name);
    EXPECT_TRUE(names.insert(d.name).second) << "duplicate";
    EXPECT_TRUE(d.kind == "gpu" || d.kind == "cpu");
    EXPECT_GT(d.bf16_tflops, 0);
    // Where FP8 exists it is twice the 16-bit rate on every listed part, up to the
    // datasheets' own rounding (L40S: 362.05 and 733, 2.02x): a sparse figure copied by
    // mistake would be 4x, a missing halving 1x.
    if (d.fp8_tflops > 0) {
      EXPECT_NEAR(d.fp8_tflops / d.bf16_tflops, 2.0, 0.03);
    }
    EXPECT_FALSE(d.source.empty());
    EXPECT_EQ(find_device(d.name), &d);
  }
  for (const char* required : {"T4", "A10", "A100-40", "A100-80", "A800", "L4", "L40S",
                               "RTX-4090", "RTX-3090", "H100-SXM", "H100-PCIe", "H800", "H20",
                               "H200", "B200", "cpu"}) {
    EXPECT_NE(find_device(required), nullptr) << required;
  }
  EXPECT_EQ(device_names().size(), device_table().size());
  EXPECT_EQ(find_device("h800"), find_device("H800"));
  EXPECT_EQ(find_device("H900"), nullptr);
}

// Names as the CUDA driver reports them; each row is a different table entry, so a pattern that
// takes its neighbour's name (H20 for an H200, L4 for an L40S, A10 for an A100) fails here.
TEST(DeviceTable, ACudaDeviceNameFindsItsRow) {
  const std::pair<const char*, const char*> names[] = {
      {"NVIDIA H200", "H200"},           {"NVIDIA H20", "H20"},
      {"NVIDIA H800", "H800"},           {"NVIDIA H100 80GB HBM3", "H100-SXM"},
      {"NVIDIA H100 PCIe", "H100-PCIe"}, {"NVIDIA H100 NVL", ""},
      {"NVIDIA A100-SXM4-40GB", "A100-40"}, {"NVIDIA A100-SXM4-80GB", "A100-80"},
      {"NVIDIA A10", "A10"},             {"NVIDIA L40S", "L40S"},
      {"NVIDIA L4", "L4"},               {"NVIDIA GeForce RTX 4090", "RTX-4090"},
      {"Tesla T4", "T4"},                {"NVIDIA B200", "B200"},
      {"NVIDIA GeForce GTX 1080", ""},
  };
  for (const auto& [name, row] : names) {
    EXPECT_EQ(device_row_for_gpu_name(name), row) << name;
    if (*row) EXPECT_NE(find_device(row), nullptr) << row;
  }
}

TEST(DeviceTable, DatasheetFiguresThatTheCostMathLeansOn) {
  // DeepSeek-V3's H800 is the H100 SXM die: 989.5 dense BF16, the unit of H800-equivalent hours.
  EXPECT_EQ(find_device("H800")->bf16_tflops, 989.5);
  EXPECT_EQ(find_device("H100-SXM")->bf16_tflops, 989.5);
  EXPECT_EQ(find_device("H800")->memory_gb, 80);
  EXPECT_EQ(find_device("A100-80")->bf16_tflops, 312);
  // Turing and Ampere have no FP8 tensor cores.
  for (const char* old : {"T4", "A10", "A100-40", "A100-80", "A800", "RTX-3090"}) {
    EXPECT_EQ(find_device(old)->fp8_tflops, 0) << old;
  }
  const DeviceSpec* cpu = find_device("cpu");
  EXPECT_EQ(cpu->kind, "cpu");
  EXPECT_EQ(cpu->bf16_tflops, 0.1);
  EXPECT_TRUE(contains(cpu->source, "nominal")) << cpu->source;
}

}  // namespace
}  // namespace baleine::config
