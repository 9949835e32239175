// The trainer on a backend whose memory is not the host's (tests/model/stand_in_backend.h):
// model, gradients, AdamW moments and ZeRO shards live there, data-parallel gradients cross
// ranks through StagedComm, checkpoints go through explicit transfers. Every layout must train
// to exactly the CPU backend's bits, and a checkpoint written on one backend must resume on the
// other as if the run had never stopped. That is the trainer's half of what the CUDA backend
// needs (the other half, the CUDA ops themselves, is tests/model/model_cuda_test.cpp).
//
// Runs on 2 and 4 ranks (tests/CMakeLists.txt); each layout below is for one of those sizes.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "parallel/process_groups.h"
#include "tests/model/stand_in_backend.h"
#include "tests/train/random_tokens.h"
#include "trainer/config/config.h"
#include "trainer/train/trainer.h"

namespace baleine::train {
namespace {

namespace fs = std::filesystem;
using baleine::testing::StandInBackend;

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// A directory of this test's own, made by rank 0 and seen by all (they share one file system).
std::string shared_dir() {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::path(BALEINE_TEST_TMP) / ("np" + std::to_string(world_size())) /
                       (std::string(test->test_suite_name()) + "." + test->name());
  if (world_rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    baleine::testing::write_random_token_shard((dir / "train.bin").string(), 20000, 7);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return dir.string();
}

// A small MoE (1 dense + 3 MoE blocks) under `layout` (YAML lines for parallel:), training
// `steps` steps into run_dir, checkpointing every 2 steps.
config::RunConfig make_config(const std::string& dir, const std::string& run_dir,
                              const std::string& layout, int64_t steps,
                              const std::string& compute) {
  std::ostringstream yaml;
  yaml << "run:\n  name: device-memory\n  dir: " << run_dir << "\n  seed: 11\n"
       << "model:\n  hidden: 32\n  layers: 4\n  heads: 2\n  intermediate: 64\n"
       << "  dense_layers: 1\n  moe:\n    routed_experts: 4\n    shared_experts: 1\n"
       << "    top_k: 2\n    intermediate: 32\n"
       << "data:\n  train: " << dir << "/train.bin\n"
       << "train:\n  steps: " << steps << "\n  micro_batch: 2\n  global_batch: 16\n"
       << "  seq_len: 16\n  eval_every: 0\n  lr:\n    peak: 3.0e-3\n    warmup_steps: 2\n"
       << "precision:\n  compute: " << compute << "\n"
       << "checkpoint:\n  every: 2\n"
       << "parallel:\n" << layout << "  bucket_mb: 0.001\n";  // 262 floats: many buckets
  return config::load_config_from_string(yaml.str(), "device-memory.yaml");
}

struct RunResult {
  TrainSummary summary;
  std::string params;  // this rank's --save-params file
};

RunResult run(const config::RunConfig& c, model::Backend* backend, const std::string& params_dir,
              const std::string& resume_from = "") {
  parallel::ProcessInfo process;
  process.rank = world_rank();
  process.world = world_size();
  process.local_rank = process.rank;
  process.local_size = process.world;
  auto groups = parallel::ProcessGroups::create(c, process);
  TrainOptions options;
  options.save_params_dir = params_dir;
  options.resume_from = resume_from;
  options.backend = backend;
  std::ostringstream out;
  RunResult r;
  r.summary = train(c, groups, options, out);
  std::ifstream in(params_dir + "/rank-" + std::to_string(process.rank) + ".params",
                   std::ios::binary);
  r.params.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

struct Layout {
  int world;
  const char* name;
  const char* yaml;
};

const Layout kLayouts[] = {
    {2, "dp 2 x ep 2, ZeRO-1", "  dp: 2\n  ep: 2\n  zero: 1\n"},
    {2, "DualPipe pp 2 (mirrored gradients)", "  pp: 2\n  schedule: dualpipe\n"},
    {4, "DualPipeV pp 2 x dp 2 x ep 2", "  pp: 2\n  schedule: dualpipev\n  dp: 2\n  ep: 2\n"},
    {4, "DualPipe pp 2 x dp 2, ZeRO-1", "  pp: 2\n  schedule: dualpipe\n  dp: 2\n  zero: 1\n"},
};

TEST(TrainerOnDeviceMemory, EveryLayoutTrainsTheCpuBits) {
  const std::string dir = shared_dir();
  for (const Layout& layout : kLayouts) {
    if (layout.world != world_size()) continue;
    for (const std::string compute : {"fp32", "fp8"}) {
      SCOPED_TRACE(std::string(layout.name) + ", " + compute);
      const std::string tag = std::to_string(&layout - kLayouts) + compute;
      const auto cpu = run(make_config(dir, dir + "/cpu" + tag, layout.yaml, 4, compute),
                           nullptr, dir + "/cpu" + tag + "-params");
      StandInBackend device;
      const auto other = run(make_config(dir, dir + "/dev" + tag, layout.yaml, 4, compute),
                             &device.backend, dir + "/dev" + tag + "-params");
      EXPECT_EQ(cpu.summary.steps, 4);
      EXPECT_EQ(cpu.summary.first_loss, other.summary.first_loss);
      EXPECT_EQ(cpu.summary.last_loss, other.summary.last_loss);
      EXPECT_NE(cpu.summary.first_loss, cpu.summary.last_loss);  // it trained
      EXPECT_FALSE(cpu.params.empty());
      EXPECT_TRUE(cpu.params == other.params) << "the final parameters differ";
      // The buffers were in the stand-in memory, and crossed to the host only on purpose.
      EXPECT_GT(device.memory.allocations, 0);
      EXPECT_GT(device.memory.to_host_calls, 0);
    }
  }
}

// Both runs of 6 steps (the learning-rate schedule depends on train.steps), checkpointing at
// 2, 4 and 6; the step-4 checkpoint of each resumes on the other backend, in a run dir of its
// own, and must end exactly where the uninterrupted run did.
TEST(TrainerOnDeviceMemory, ACheckpointResumesOnTheOtherBackendAsIfUninterrupted) {
  const std::string dir = shared_dir();
  for (const Layout& layout : kLayouts) {
    if (layout.world != world_size()) continue;
    SCOPED_TRACE(layout.name);
    const std::string tag = std::to_string(&layout - kLayouts);
    StandInBackend device;
    const auto on_cpu = run(make_config(dir, dir + "/cpu" + tag, layout.yaml, 6, "fp32"),
                            nullptr, dir + "/cpu" + tag + "-params");
    const auto on_device = run(make_config(dir, dir + "/dev" + tag, layout.yaml, 6, "fp32"),
                               &device.backend, dir + "/dev" + tag + "-params");
    EXPECT_TRUE(on_cpu.params == on_device.params);
    for (const bool device_first : {true, false}) {
      SCOPED_TRACE(device_first ? "device, then cpu" : "cpu, then device");
      const std::string from = dir + (device_first ? "/dev" : "/cpu") + tag +
                               "/checkpoints/step-000004";
      const std::string run_dir = dir + "/resumed" + tag + (device_first ? "d" : "c");
      const auto resumed = run(make_config(dir, run_dir, layout.yaml, 6, "fp32"),
                               device_first ? nullptr : &device.backend, run_dir + "-params",
                               from);
      EXPECT_EQ(resumed.summary.resumed_from_step, 4);
      EXPECT_EQ(resumed.summary.last_loss, on_cpu.summary.last_loss);
      EXPECT_TRUE(resumed.params == on_cpu.params) << "the final parameters differ";
    }
  }
}

}  // namespace
}  // namespace baleine::train
