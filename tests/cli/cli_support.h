#pragma once
// Runs the real baleine binary the way a user does and captures what they would see.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/scratch_dir.h"

namespace baleine::testing {

struct CommandResult {
  int exit_code = -1;
  bool signaled = false;   // killed by a signal (a crash)
  std::string output;      // stdout and stderr together
};

// Runs `launcher baleine args`, e.g. launcher = "mpirun -np 2" (empty for a plain process).
inline CommandResult run_baleine(const std::string& args, const std::string& launcher = "") {
  const std::string command =
      launcher + (launcher.empty() ? "" : " ") + std::string(BALEINE_BINARY) + " " + args + " 2>&1";
  CommandResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}


inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A small corpus from the project's own sources (every checkout has them), prepared once.
inline std::string prepared_corpus(const std::string& dir) {
  const std::string out = dir + "/data";
  const auto r = run_baleine("data prepare --input " + std::string(BALEINE_SOURCE_DIR) +
                             "/trainer " + std::string(BALEINE_SOURCE_DIR) + "/kernels --output " +
                             out + " --val-fraction 0.1");
  if (r.exit_code != 0) return "";
  return out;
}

// A tiny but complete MoE config over `data` (train_*.bin / val_*.bin inside it).
inline std::string tiny_config(const std::string& data, const std::string& run_dir,
                               int steps = 30) {
  return "run:\n  name: tiny\n  dir: " + run_dir +
         "\n  seed: 7\n"
         "model:\n  hidden: 32\n  layers: 2\n  heads: 2\n  intermediate: 64\n"
         "  dense_layers: 1\n"
         "  moe:\n    routed_experts: 4\n    shared_experts: 1\n    top_k: 2\n"
         "    intermediate: 32\n    bias_update_speed: 0.01\n"
         "data:\n  train: " + data + "/train_*.bin\n  val: " + data + "/val_*.bin\n"
         "train:\n  steps: " + std::to_string(steps) +
         "\n  micro_batch: 4\n  global_batch: 8\n  seq_len: 32\n  eval_every: 10\n"
         "  eval_batches: 2\n  lr:\n    peak: 0.01\n    min: 0.001\n    warmup_steps: 3\n"
         "log:\n  every: 5\n";
}

}  // namespace baleine::testing
