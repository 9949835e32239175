// GoogleTest main for tests/**/*_mpi_test.cpp, which run on several MPI ranks at once
// (tests/CMakeLists.txt starts them under mpiexec with 2 and 4 ranks).
//
// Every rank runs every test. Rank 0 prints the usual GoogleTest report; the other ranks print
// only their failures, each line prefixed with "[rank N]", so the output stays readable and no
// failure is lost. The exit status is non-zero on every rank if any rank failed.
//
// Tests must keep collectives matched on all ranks even when an assertion fails: use EXPECT_
// around collective code (an ASSERT_ returns early and would skip the collective on one rank
// only; the watchdog would then abort the job after its timeout instead of reporting cleanly).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <sstream>
#include <string>

#include "parallel/runtime.h"

namespace {

// Reports one rank's failures with its rank as a prefix (stands in for the default printer on
// ranks other than 0).
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : prefix_("[rank " + std::to_string(rank) + "] ") {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::string text = prefix_ + (result.file_name() ? result.file_name() : "unknown") + ":" +
                       std::to_string(result.line_number()) + ": Failure\n";
    // Every line carries the prefix: ranks' outputs interleave line by line.
    std::istringstream message(result.message());
    for (std::string line; std::getline(message, line);) text += prefix_ + line + "\n";
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (!info.result()->Failed()) return;
    const std::string text = prefix_ + "[  FAILED  ] " + info.test_suite_name() + "." +
                             info.name() + "\n";
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  std::string prefix_;
};

}  // namespace

int main(int argc, char** argv) {
  baleine::parallel::MpiRuntime runtime(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = runtime.info().rank;

  ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }

  const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_anywhere = 0;
  MPI_Allreduce(&failed_here, &failed_anywhere, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && failed_anywhere && !failed_here) {
    std::printf("FAILED on another rank: see the [rank N] lines above\n");
  }
  std::fflush(stdout);
  return failed_anywhere ? 1 : 0;
}
