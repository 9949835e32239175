#pragma once
// Shared by the equivalence tests (parallel_equivalence_test, pipeline_equivalence_test): train
// the real binary under mpirun with some layout, then compare its losses (metrics.jsonl) and its
// final parameters (--save-params, by global name) with a single-process run of the same
// global batch. The tolerances and why they are what they are: parallel_equivalence_test.cpp.
//
// Routing flips. A layout sums the same FP32 terms in another order, which moves a router
// score by ~1e-7 relative; when two experts' scores for a token tie to that precision, the
// layout can pick the other one. From that step on the runs take different routes and part
// like any two chaotic trajectories (seen: the same 1-token flip at step 12 of 20 moved the
// last losses by 5e-4), so nothing after it says anything about the layout. The comparison
// therefore covers the steps before the first step whose expert loads (metrics.jsonl's
// expert_load, the routing itself) differ, and the final parameters only when none did; the
// routing must agree for at least kMinStepsBeforeRoutingFlip steps. A real bug (a wrong
// gradient average, a lost hand-off) moves the losses by 1e-2 within a few steps and fails
// the loss check long before that. Comparisons whose tolerances already cover divergent
// routes (FP8, where a reordered sum can land on the neighbouring E4M3 code) pass
// Routing::kMayDiffer and compare every step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/cli/cli_support.h"
#include "trainer/train/param_dump.h"

namespace baleine::testing {

inline constexpr double kLossRelTol = 1e-5;
inline constexpr double kParamAbsTol = 5e-5;
inline constexpr int kSteps = 20;
inline constexpr size_t kMinStepsBeforeRoutingFlip = 8;
enum class Routing { kMustAgree, kMayDiffer };

inline std::vector<double> losses(const std::string& metrics) {
  std::ifstream in(metrics);
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(std::stod(line.substr(line.find("\"loss\":") + 7)));
  }
  return out;
}

// Each step's expert_load array as written (one entry per MoE layer, one count per expert);
// empty strings for a model without MoE layers.
inline std::vector<std::string> expert_loads(const std::string& metrics) {
  std::ifstream in(metrics);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find("\"expert_load\":");
    out.push_back(at == std::string::npos ? "" : line.substr(at, line.find("]]", at) - at));
  }
  return out;
}

// Union of every rank's file; tensors held by several ranks (replicas) must agree bitwise.
inline std::map<std::string, std::vector<float>> all_params(const std::string& dir) {
  std::map<std::string, std::vector<float>> all;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    for (auto& [name, values] : train::load_params(file.path().string())) {
      auto [it, inserted] = all.emplace(name, values);
      if (!inserted) {
        EXPECT_EQ(it->second, values) << name << ": replicas differ";
      }
    }
  }
  return all;
}

class EquivalenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir();
    data_ = prepared_corpus(dir_);
    ASSERT_FALSE(data_.empty());
    std::string yaml = tiny_config(data_, dir_ + "/unused", kSteps);
    // 8 experts (divisible by every ep here), the balance loss on, eval only at the end.
    yaml.replace(yaml.find("routed_experts: 4"), 17, "routed_experts: 8");
    yaml.replace(yaml.find("eval_every: 10"), 14, "eval_every: 0");
    // Global batch 8 as 4 x 2 on one process, 2 x 2 on dp 2, 1 x 2 on dp 4.
    yaml.replace(yaml.find("micro_batch: 4"), 14, "micro_batch: 2");
    yaml.replace(yaml.find("    bias_update_speed"), 0, "    seq_aux_alpha: 0.001\n");
    adjust(yaml);
    config_ = dir_ + "/equivalence.yaml";
    write_text(config_, yaml);
  }

  // A test's own changes to the shared config.
  virtual void adjust(std::string& yaml) { (void)yaml; }

  // Trains with `ranks` processes and the given overrides; returns the run's name.
  std::string run(const std::string& name, int ranks, const std::string& overrides) {
    const std::string args = "train " + config_ + " --set run.dir=" + dir_ + "/" + name +
                             " --save-params " + dir_ + "/" + name + "/params " + overrides;
    const std::string launcher =
        ranks == 1 ? "" : "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                          "mpirun --oversubscribe -np " + std::to_string(ranks);
    const auto r = run_baleine(args, launcher);
    EXPECT_EQ(r.exit_code, 0) << name << ":\n" << r.output;
    return name;
  }

  void expect_same_as_single_process(const std::string& name,
                                     double param_abs_tol = kParamAbsTol,
                                     double loss_rel_tol = kLossRelTol,
                                     Routing routing_rule = Routing::kMustAgree) {
    const auto reference = losses(dir_ + "/single/metrics.jsonl");
    const auto layout = losses(dir_ + "/" + name + "/metrics.jsonl");
    ASSERT_EQ(reference.size(), static_cast<size_t>(kSteps));
    ASSERT_EQ(layout.size(), reference.size()) << name;
    const auto reference_routing = expert_loads(dir_ + "/single/metrics.jsonl");
    const auto routing = expert_loads(dir_ + "/" + name + "/metrics.jsonl");
    size_t comparable = 0;  // steps before the first routing flip
    while (comparable < reference.size() &&
           (routing_rule == Routing::kMayDiffer ||
            routing.at(comparable) == reference_routing.at(comparable))) {
      ++comparable;
    }
    EXPECT_GE(comparable, std::min(kMinStepsBeforeRoutingFlip, reference.size()))
        << name << ": the routing differs from the single process's from step " << comparable + 1
        << ":\n  " << routing.at(comparable) << "\n  " << reference_routing.at(comparable);
    double worst_loss = 0;
    for (size_t i = 0; i < comparable; ++i) {
      worst_loss = std::max(worst_loss, std::abs(layout[i] - reference[i]) / reference[i]);
      EXPECT_NEAR(layout[i], reference[i], loss_rel_tol * reference[i]) << name << " step " << i + 1;
    }
    const auto want = all_params(dir_ + "/single/params");
    const auto got = all_params(dir_ + "/" + name + "/params");
    ASSERT_EQ(got.size(), want.size()) << name << ": every parameter, by global name";
    if (comparable < reference.size()) {
      std::printf("%-14s worst loss rel diff %.2e over steps 1-%zu; a near-tie routed a token "
                  "differently at step %zu, so the later steps and the final parameters are not "
                  "compared\n",
                  name.c_str(), worst_loss, comparable, comparable + 1);
      return;
    }
    double worst_param = 0;
    for (const auto& [param, values] : want) {
      const auto& other = got.at(param);
      ASSERT_EQ(other.size(), values.size()) << param;
      for (size_t i = 0; i < values.size(); ++i) {
        worst_param = std::max(worst_param, static_cast<double>(std::abs(other[i] - values[i])));
      }
    }
    EXPECT_LE(worst_param, param_abs_tol) << name;
    std::printf("%-14s worst loss rel diff %.2e, worst param abs diff %.2e\n", name.c_str(),
                worst_loss, worst_param);
  }

  std::string dir_, data_, config_;
};

}  // namespace baleine::testing
