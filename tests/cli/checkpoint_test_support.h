#pragma once
// Shared by the checkpoint acceptance tests (checkpoint_fault_test, checkpoint_resume_test):
// reading a run's metrics.jsonl back as exact doubles, checking a run dir's checkpoints with
// the checkpoint store's own API, damaging files, and running the real binary in the
// background so that a test can signal it the way Slurm or a user would.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tests/cli/cli_support.h"
#include "trainer/checkpoint/checkpoint_store.h"

extern char** environ;

namespace baleine::testing {

// Open MPI refuses to start as root without these; one OpenMP thread per rank because the
// tests oversubscribe 2 cores with up to 4 ranks.
inline const char* const kMpiEnvironment =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1";

// The launcher prefix for run_baleine: `env` (e.g. "BALEINE_FAULT_INJECT=...") then mpirun with
// `ranks` processes, or the plain process for one rank. `timeout 120` turns a hang into a
// failure (exit 124) instead of a stuck ctest.
inline std::string launcher(int ranks, const std::string& env = "") {
  std::string prefix = std::string(kMpiEnvironment) + (env.empty() ? "" : " " + env) + " timeout 120";
  if (ranks > 1) prefix += " mpirun --oversubscribe -np " + std::to_string(ranks);
  return prefix;
}

// One line of metrics.jsonl, the fields these tests look at.
struct MetricsLine {
  int64_t step = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  bool grad_norm_is_null = false;
  std::string skipped;  // the reason when the guard did not apply the step
  double step_s = 0;
};

// JSON numbers written with %.17g read back with strtod are the very doubles the trainer had
// (strtod rounds correctly), so losses compare bit for bit.
inline double exact_double(const YAML::Node& node) {
  if (!node || node.IsNull() || node.Scalar() == "null") return std::numeric_limits<double>::quiet_NaN();
  return std::strtod(node.Scalar().c_str(), nullptr);
}

inline std::vector<MetricsLine> read_metrics(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<MetricsLine> lines;
  for (std::string text; std::getline(in, text);) {
    MetricsLine m;
    try {
      const YAML::Node json = YAML::Load(text);
      if (!json.IsMap()) {
        ADD_FAILURE() << run_dir << "/metrics.jsonl: not an object: " << text;
        continue;
      }
      m.step = json["step"].as<int64_t>();
      m.loss = exact_double(json["loss"]);
      m.grad_norm_is_null = json["grad_norm"].IsNull() || json["grad_norm"].Scalar() == "null";
      if (json["skipped"]) m.skipped = json["skipped"].as<std::string>();
      m.step_s = exact_double(json["step_s"]);
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << run_dir << "/metrics.jsonl: " << e.what() << " in: " << text;
      continue;
    }
    lines.push_back(m);
  }
  return lines;
}

inline std::vector<double> read_losses(const std::string& run_dir) {
  std::vector<double> losses;
  for (const auto& line : read_metrics(run_dir)) losses.push_back(line.loss);
  return losses;
}

// The whole trajectory (steps 1..N in order, every loss) equals the reference bit for bit.
inline void expect_same_trajectory(const std::string& reference_dir, const std::string& run_dir,
                                   size_t steps) {
  const auto want = read_metrics(reference_dir);
  const auto got = read_metrics(run_dir);
  ASSERT_EQ(want.size(), steps) << reference_dir;
  ASSERT_EQ(got.size(), steps) << run_dir << ": one metrics line per step, carried over on resume";
  for (size_t i = 0; i < steps; ++i) {
    EXPECT_EQ(got[i].step, static_cast<int64_t>(i + 1)) << run_dir;
    // == on doubles is bitwise here (no NaN expected; a NaN would fail, as it should).
    EXPECT_EQ(got[i].loss, want[i].loss) << run_dir << " step " << i + 1;
  }
}

// What `dir`'s checkpoints look like to the store: every complete one must verify.
struct CheckpointCensus {
  int64_t newest_complete = -1;  // step, -1 when none
  std::string newest_complete_path;
  int complete = 0;
  std::vector<std::string> problems;  // a complete checkpoint that fails to verify, etc.
};

// Safe to call from worker threads (no gtest assertions): problems are returned.
inline CheckpointCensus census(const std::string& run_dir) {
  CheckpointCensus c;
  for (const auto& entry : ckpt::find_checkpoints(run_dir)) {
    if (!entry.complete) continue;
    ++c.complete;
    if (c.newest_complete < 0) {
      c.newest_complete = entry.step;
      c.newest_complete_path = entry.path;
    }
    try {
      const ckpt::Manifest m = ckpt::read_manifest(entry.path);
      if (m.step != entry.step) {
        c.problems.push_back(entry.path + ": manifest says step " + std::to_string(m.step));
      }
      const std::string bad = ckpt::verify_shards(entry.path, m);
      if (!bad.empty()) c.problems.push_back(entry.path + ": " + bad);
    } catch (const std::exception& e) {
      c.problems.push_back(entry.path + ": " + e.what());
    }
  }
  return c;
}

inline std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  return ckpt::checkpoints_root(run_dir) + "/" + ckpt::checkpoint_dir_name(step);
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// XORs one byte of the file in place (a bit rot or a torn sector).
inline void flip_byte(const std::string& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << path;
  f.seekg(offset);
  char byte = 0;
  ASSERT_TRUE(f.get(byte)) << path << " has no byte " << offset;
  f.seekp(offset);
  f.put(static_cast<char>(byte ^ 0x5a));
  ASSERT_TRUE(f.flush()) << path;
}

// The number in "<prefix>N" in `text` (e.g. "passed " in "passed 348 kill points"), or -1.
inline int64_t number_after(const std::string& text, const std::string& prefix) {
  const auto at = text.find(prefix);
  if (at == std::string::npos) return -1;
  return std::strtoll(text.c_str() + at + prefix.size(), nullptr, 10);
}

// The save times printed as "checkpoint: PATH (N ms)", in seconds: the longest.
inline double longest_checkpoint_save_s(const std::string& output) {
  double longest = 0;
  for (size_t at = output.find("checkpoint: "); at != std::string::npos;
       at = output.find("checkpoint: ", at + 1)) {
    const auto open = output.find(" (", at);
    const auto line_end = output.find('\n', at);
    if (open == std::string::npos || open > line_end) continue;
    longest = std::max(longest, std::strtod(output.c_str() + open + 2, nullptr) / 1000.0);
  }
  return longest;
}

// The real binary (or mpirun with it) started in the background, its stdout and stderr in a
// log file, so that the test can signal the very process a scheduler would signal.
class BackgroundRun {
 public:
  // argv[0] is looked up in PATH; `env` entries ("NAME=value") are added to this environment.
  BackgroundRun(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                std::string log)
      : log_(std::move(log)) {
    // This process's environment with `env` replacing variables of the same name.
    std::vector<std::string> environment = env;
    for (char** e = environ; *e; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('=') + 1);
      const bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string& mine) {
        return mine.compare(0, name.size(), name) == 0;
      });
      if (!replaced) environment.push_back(entry);
    }
    std::vector<char*> args, envp;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const auto& e : environment) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&files, STDOUT_FILENO, STDERR_FILENO);
    if (posix_spawnp(&pid_, args[0], &files, nullptr, args.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&files);
  }
  ~BackgroundRun() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  BackgroundRun(const BackgroundRun&) = delete;
  BackgroundRun& operator=(const BackgroundRun&) = delete;

  bool started() const { return pid_ > 0; }
  bool running() {
    if (reaped_) return false;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return !reaped_;
  }
  void signal(int sig) const { kill(pid_, sig); }

  // Waits at most `limit_s`; returns whether it ended (else it is killed on destruction).
  bool wait(double limit_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
    while (running()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }
  int exit_code() const { return reaped_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }
  bool signaled() const { return reaped_ && WIFSIGNALED(status_); }
  std::string output() const { return read_text(log_); }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

// Waits until `path` has at least `lines` lines or `run` ends or `limit_s` passes; returns
// whether the lines are there.
inline bool wait_for_lines(const std::string& path, size_t lines, BackgroundRun& run,
                           double limit_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string text = read_text(path);
    if (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) >= lines) return true;
    if (!run.running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace baleine::testing
