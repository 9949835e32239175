// No silent hangs: a rank that dies or hangs mid-step ends the whole job with a non-zero status
// and a message naming that rank, within parallel.timeout_s + 10 s. Faults are injected with
// BALEINE_FAULT_INJECT (trainer/train/fault_injection.h) into world rank 1 at step 3.
#include <gtest/gtest.h>

#include <chrono>

#include "tests/cli/cli_support.h"

namespace baleine::testing {
namespace {

constexpr int kTimeoutSeconds = 4;

class Fault : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir();
    data_ = prepared_corpus(dir_);
    ASSERT_FALSE(data_.empty());
    write_text(dir_ + "/fault.yaml", tiny_config(data_, dir_ + "/run", 10));
  }
  // Runs a dp=2 job with the fault; returns what the user sees and how long it took.
  CommandResult run_with_fault(const std::string& kind, double& seconds) {
    const auto start = std::chrono::steady_clock::now();
    const auto r = run_baleine(
        "train " + dir_ + "/fault.yaml --set parallel.dp=2 --set train.micro_batch=2 "
        "--set parallel.timeout_s=" + std::to_string(kTimeoutSeconds),
        "BALEINE_FAULT_INJECT=rank=1,step=3,kind=" + kind +
            " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
            "timeout 120 mpirun --oversubscribe -np 2");
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
  }
  std::string dir_, data_;
};

TEST_F(Fault, AHungRankIsNamedByTheWatchdog) {
  double seconds = 0;
  const auto r = run_with_fault("hang", seconds);
  EXPECT_EQ(r.exit_code, 3) << r.output;  // parallel::kExitCommTimeout
  EXPECT_NE(r.output.find("did not complete within 4 s; world rank(s) 1 have not entered it"),
            std::string::npos)
      << r.output;
  EXPECT_LT(seconds, kTimeoutSeconds + 10) << r.output;
}

TEST_F(Fault, ARankThatExitsEndsTheJob) {
  double seconds = 0;
  const auto r = run_with_fault("exit", seconds);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "the job hung until `timeout` killed it:\n" << r.output;
  // The launcher reports the dead rank (Open MPI: "Process name: [[job,1],1]"); the others
  // stop at once or, at the latest, when their watchdog fires.
  const bool launcher_named_it = r.output.find("],1]") != std::string::npos;
  const bool watchdog_named_it = r.output.find("world rank(s) 1 have not entered it") != std::string::npos;
  EXPECT_TRUE(launcher_named_it || watchdog_named_it) << r.output;
  EXPECT_LT(seconds, kTimeoutSeconds + 10) << r.output;
}

}  // namespace
}  // namespace baleine::testing
