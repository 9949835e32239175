// A whole training run on the GPU (device: cuda) against the same run on the CPU: the
// quickstart model, one process, 5 steps of AdamW with the learning rate at its peak from
// step 2, in FP32, BF16 and FP8. The model, the optimizer and the gradient norm all run on the
// CUDA backend; the losses of every step and the final parameters must follow the CPU's.
// Skips without a GPU.
//
// Tolerances. One forward/backward on the GPU agrees with the CPU to 1e-5 (fp32), 1e-3 (bf16)
// and 1e-2 (fp8) in the loss and 1e-4 / 2e-2 / 1e-1 in the gradients
// (tests/model/model_cuda_test.cpp). AdamW divides each gradient by its own running RMS, so an
// element whose gradient is at the noise level of that agreement can step by up to lr either
// way; each step's loss then moves by about as much as the gradient error, compounded over 5
// steps: 1e-4 / 1e-2 / 5e-2 relative per loss. The parameters move by ~5·lr = 2e-2 per element
// from their N(0, 0.02²) start, so a lost, doubled or misplaced update shows as an O(1)
// relative difference; the bound, 2e-2 / 1e-1 / 2e-1 of ‖cpu‖, leaves room for the noise only.
// These are first estimates: calibrate them on the first GPU run (bench/results/).
#include <gtest/gtest.h>

#ifndef BALEINE_HAVE_CUDA

TEST(TrainerCuda, NeedsTheCudaBackend) { GTEST_SKIP() << "built without CUDA"; }

#else

#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "parallel/process_groups.h"
#include "tests/cli/equivalence_support.h"
#include "tests/train/random_tokens.h"
#include "trainer/config/config.h"
#include "trainer/train/param_dump.h"
#include "trainer/train/trainer.h"

namespace baleine::train {
namespace {

namespace fs = std::filesystem;

// MPI for the trainer's (one-rank) groups, initialised once per test program where a GPU is.
class MpiForOneRank : public ::testing::Environment {
 public:
  void SetUp() override {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && !kernels::cuda_devices().empty()) {
      MPI_Init(nullptr, nullptr);
      started_ = true;
    }
  }
  void TearDown() override {
    if (started_) MPI_Finalize();
  }

 private:
  bool started_ = false;
};
const auto* const kMpi = ::testing::AddGlobalTestEnvironment(new MpiForOneRank);

struct Tolerance {
  double loss, params;
};

config::RunConfig quickstart(const std::string& dir, const std::string& device,
                             const std::string& compute) {
  std::ostringstream yaml;
  yaml << "device: " << device << "\n"
       << "run:\n  name: trainer-cuda\n  dir: " << dir << "/" << device << "-" << compute
       << "\n  seed: 1234\n"
       << "model:\n  hidden: 96\n  layers: 4\n  heads: 4\n  intermediate: 256\n"
       << "  dense_layers: 1\n  moe:\n    routed_experts: 8\n    shared_experts: 1\n"
       << "    top_k: 2\n    intermediate: 96\n"
       << "data:\n  train: " << dir << "/train.bin\n"
       << "train:\n  steps: 5\n  micro_batch: 4\n  global_batch: 8\n  seq_len: 128\n"
       << "  eval_every: 0\n  lr:\n    peak: 4.0e-3\n    min: 4.0e-3\n    warmup_steps: 1\n"
       << "precision:\n  compute: " << compute << "\n"
       << "checkpoint:\n  every: 0\n";
  return config::load_config_from_string(yaml.str(), "trainer-cuda.yaml");
}

// The run's losses per step and its final parameters (by name, in declaration order).
struct Outcome {
  std::vector<double> losses;
  std::vector<float> params;
};

Outcome train_once(const config::RunConfig& c, const std::string& params_dir) {
  parallel::ProcessInfo process;  // one rank, local rank 0
  auto groups = parallel::ProcessGroups::create(c, process);
  TrainOptions options;
  options.save_params_dir = params_dir;
  std::ostringstream out;
  const TrainSummary summary = train(c, groups, options, out);
  EXPECT_EQ(summary.steps, 5) << out.str();
  Outcome o;
  o.losses = baleine::testing::losses(c.run.dir + "/metrics.jsonl");
  for (const auto& [name, values] : load_params(params_dir + "/rank-0.params")) {
    o.params.insert(o.params.end(), values.begin(), values.end());
  }
  return o;
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

TEST(TrainerCuda, QuickstartRunOnTheGpuFollowsTheCpu) {
  if (kernels::cuda_devices().empty()) GTEST_SKIP() << "no CUDA device on this machine";
  const fs::path dir = fs::path(BALEINE_TEST_TMP) / "quickstart";
  fs::remove_all(dir);
  fs::create_directories(dir);
  baleine::testing::write_random_token_shard((dir / "train.bin").string(), 200000, 3);

  const std::pair<const char*, Tolerance> cases[] = {
      {"fp32", {1e-4, 2e-2}}, {"bf16", {1e-2, 1e-1}}, {"fp8", {5e-2, 2e-1}}};
  for (const auto& [compute, tolerance] : cases) {
    SCOPED_TRACE(compute);
    const Outcome cpu = train_once(quickstart(dir.string(), "cpu", compute),
                                   (dir / "cpu-params").string() + compute);
    const Outcome gpu = train_once(quickstart(dir.string(), "cuda", compute),
                                   (dir / "gpu-params").string() + compute);
    ASSERT_EQ(cpu.losses.size(), 5u);
    ASSERT_EQ(gpu.losses.size(), 5u);
    EXPECT_LT(cpu.losses.back(), cpu.losses.front());  // it trained
    for (size_t s = 0; s < 5; ++s) {
      EXPECT_NEAR(gpu.losses[s], cpu.losses[s], tolerance.loss * std::abs(cpu.losses[s]))
          << "step " << s + 1;
    }
    ASSERT_EQ(gpu.params.size(), cpu.params.size());
    EXPECT_LT(relative_difference(gpu.params, cpu.params), tolerance.params);
  }
}

}  // namespace
}  // namespace baleine::train

#endif  // BALEINE_HAVE_CUDA
