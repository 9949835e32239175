// End-to-end: the real binary trains a tiny MoE on the project's own sources and leaves the
// files it promises; the loss falls; the same seed gives the same losses bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "tests/cli/cli_support.h"

namespace baleine::testing {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

double json_number(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nan("");
  return std::stod(line.substr(at + key.size() + 3));
}

class TrainRun : public ::testing::Test {
 protected:
  // ctest runs every test as its own process, in parallel: each gets its own directory.
  void SetUp() override {
    dir_ = scratch_dir();
    data_ = prepared_corpus(dir_);
    ASSERT_FALSE(data_.empty());
  }
  std::string dir_, data_;
};

TEST_F(TrainRun, LossFallsAndRunFilesAreWritten) {
  const std::string run_dir = dir_ + "/run-a";
  write_text(dir_ + "/a.yaml", tiny_config(data_, run_dir, 60));
  const auto r = run_baleine("train " + dir_ + "/a.yaml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Progress lines, the resolved config table and the topology line are printed.
  EXPECT_NE(r.output.find("step  1/60 | loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tok/s"), std::string::npos);
  EXPECT_NE(r.output.find("train.micro_batch"), std::string::npos);
  EXPECT_NE(r.output.find("topology: world 1"), std::string::npos);

  const auto metrics = read_lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 60u);
  const double first = json_number(metrics.front(), "loss");
  const double last = json_number(metrics.back(), "loss");
  EXPECT_LT(last, 0.7 * first) << "loss " << first << " -> " << last;
  for (const auto* key : {"step", "lr", "grad_norm", "tokens", "tokens_per_s", "expert_imbalance"}) {
    EXPECT_FALSE(std::isnan(json_number(metrics[10], key))) << key << " in " << metrics[10];
  }
  EXPECT_FALSE(std::isnan(json_number(metrics[9], "val_loss"))) << metrics[9];  // eval_every 10
  EXPECT_NE(metrics[10].find("\"expert_load\":[["), std::string::npos) << metrics[10];
  EXPECT_EQ(json_number(metrics[59], "tokens"), 60.0 * 8 * 32);

  // Routing per step and MoE layer: dropless, so the loads add up to tokens x top_k.
  const auto routing = read_lines(run_dir + "/expert_load.jsonl");
  ASSERT_EQ(routing.size(), 60u);
  EXPECT_EQ(routing[0].rfind("{\"step\":1,\"layers\":[{\"layer\":1,", 0), 0u) << routing[0];
  const auto load_begin = routing[5].find("\"load\":[") + 8;
  const auto load_end = routing[5].find(']', load_begin);
  std::stringstream loads(routing[5].substr(load_begin, load_end - load_begin));
  int64_t total = 0, experts = 0;
  for (std::string n; std::getline(loads, n, ',');) total += std::stoll(n), ++experts;
  EXPECT_EQ(experts, 4);
  EXPECT_EQ(total, 8 * 32 * 2);

  // The resolved config is itself a valid config that reproduces the run's settings.
  ASSERT_TRUE(std::filesystem::exists(run_dir + "/config.resolved.yaml"));
  const auto again = run_baleine("train " + run_dir + "/config.resolved.yaml --set train.steps=4 "
                                 "--set run.dir=" + dir_ + "/run-resolved");
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

TEST_F(TrainRun, SameSeedSameLossesAndEarlierMetricsAreKept) {
  const std::string run_dir = dir_ + "/run-b";
  write_text(dir_ + "/b.yaml", tiny_config(data_, run_dir, 8));
  ASSERT_EQ(run_baleine("train " + dir_ + "/b.yaml").exit_code, 0);
  const auto first = read_lines(run_dir + "/metrics.jsonl");
  const auto r = run_baleine("train " + dir_ + "/b.yaml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("metrics.1.jsonl"), std::string::npos) << r.output;
  const auto second = read_lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(read_lines(run_dir + "/metrics.1.jsonl"), first);  // nothing lost
  ASSERT_EQ(first.size(), second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(json_number(first[i], "loss"), json_number(second[i], "loss")) << i;
    EXPECT_EQ(json_number(first[i], "grad_norm"), json_number(second[i], "grad_norm")) << i;
  }
}

TEST_F(TrainRun, GradientAccumulationMatchesOneBigMicroBatch) {
  // global 8 as 2 x 4 and as 1 x 8: the same data and the same update up to float rounding.
  write_text(dir_ + "/c.yaml", tiny_config(data_, dir_ + "/run-c", 3));
  ASSERT_EQ(run_baleine("train " + dir_ + "/c.yaml").exit_code, 0);
  const auto r = run_baleine("train " + dir_ + "/c.yaml --set train.micro_batch=8 --set run.dir=" +
                             dir_ + "/run-d");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto a = read_lines(dir_ + "/run-c/metrics.jsonl");
  const auto b = read_lines(dir_ + "/run-d/metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    // float32 sums in a different order: agreement to ~1e-5 relative is expected.
    EXPECT_NEAR(json_number(a[i], "loss"), json_number(b[i], "loss"), 1e-4) << i;
  }
}

}  // namespace
}  // namespace baleine::testing
