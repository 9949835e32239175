// The GPU-hour ledger on real runs: every device-second of a multi-rank run is accounted for
// (the segments add up to world size x wall time), and a run killed with SIGKILL and resumed
// in the same run dir shows both restarts and the killed one's work as lost.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>

#include "tests/cli/cli_support.h"
#include "trainer/cost/ledger.h"

namespace baleine::testing {
namespace {

using cost::Segment;

double seg(const cost::SegmentSeconds& s, Segment which) {
  return s[static_cast<size_t>(which)];
}

class Ledger : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir();
    data_ = prepared_corpus(dir_);
    ASSERT_FALSE(data_.empty());
    run_ = dir_ + "/run";
  }
  std::string dir_, data_, run_;
};

TEST_F(Ledger, SegmentsOfAMultiRankRunAddUpToWorldSizeTimesWallTime) {
  write_text(dir_ + "/run.yaml", tiny_config(data_, run_, 30));
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_baleine(
      "train " + dir_ + "/run.yaml --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 "
      "--set train.micro_batch=2 --set ledger.flush_every_s=0.5",
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun "
      "--oversubscribe -np 4");
  const double outside = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("MFU"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CPU-h"), std::string::npos) << r.output;

  const cost::LedgerContents ledger = cost::read_ledger(run_ + "/ledger.jsonl");
  EXPECT_TRUE(ledger.problems.empty());
  ASSERT_EQ(ledger.restarts.size(), 1u);
  const cost::RestartRecord& run = ledger.restarts[0];
  ASSERT_TRUE(run.ended);
  EXPECT_EQ(run.last.status, "completed");
  EXPECT_EQ(run.start.world, 4);
  EXPECT_EQ(run.last.step, 30);
  const double total = cost::total_seconds(run.last.segments);
  const double world_wall = 4 * run.last.wall_s;
  // Every rank's time is in exactly one segment, gathered from all four ranks; world_wall takes
  // rank 0's wall time for all four, so the ranks' start skew under mpirun is the difference
  // (an absolute amount: seen up to 33 ms on a 1.7 s run): 1% plus 50 ms per rank.
  EXPECT_NEAR(total, world_wall, 0.01 * world_wall + 4 * 0.05);
  // And the ledger never claims more than the job took from outside (mpirun's own start-up
  // and tear-down are the difference).
  EXPECT_LE(run.last.wall_s, outside);
  for (size_t i = 0; i < cost::kSegmentCount; ++i) EXPECT_GE(run.last.segments[i], 0.0) << i;
  EXPECT_GT(seg(run.last.segments, Segment::kStartup), 0);
  EXPECT_GT(seg(run.last.segments, Segment::kCompute), 0);
  EXPECT_GT(seg(run.last.segments, Segment::kCommunication), 0);  // dp/ep all-reduces
  EXPECT_GT(seg(run.last.segments, Segment::kBubble), 0);         // pp = 2
  EXPECT_GT(seg(run.last.segments, Segment::kEvaluation), 0);
  EXPECT_EQ(seg(run.last.segments, Segment::kLostWork), 0);
}

TEST_F(Ledger, AKilledRunIsFoundOnResumeAndItsWorkCountedAsLost) {
  write_text(dir_ + "/run.yaml", tiny_config(data_, run_, 100000));
  const std::string ledger_path = run_ + "/ledger.jsonl";
  // Start a run that would go on for a long time; SIGKILL it once the ledger holds two
  // progress records (flushed every 0.2 s).
  const std::string kill_script =
      "timeout 120 bash -c '" + std::string(BALEINE_BINARY) + " train " + dir_ +
      "/run.yaml --set ledger.flush_every_s=0.2 > " + dir_ + "/killed.log 2>&1 & pid=$!; "
      "until [ \"$(grep -c progress " + ledger_path + " 2>/dev/null)\" -ge 2 ]; do sleep 0.1; "
      "done; kill -9 $pid; wait $pid; echo status=$?'";
  FILE* pipe = popen(kill_script.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[256] = {};
  const size_t n = fread(buf, 1, sizeof(buf) - 1, pipe);
  pclose(pipe);
  ASSERT_NE(std::string(buf, n).find("status=137"), std::string::npos) << std::string(buf, n);

  const auto resumed = run_baleine("train " + dir_ + "/run.yaml --set train.steps=10");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("restart 0 in this run dir has no end record"), std::string::npos)
      << resumed.output;

  const cost::LedgerContents ledger = cost::read_ledger(ledger_path);
  EXPECT_TRUE(ledger.problems.empty()) << ledger.problems.front().message;
  ASSERT_EQ(ledger.restarts.size(), 2u);
  const cost::RestartRecord& killed = ledger.restarts[0];
  const cost::RestartRecord& second = ledger.restarts[1];
  EXPECT_FALSE(killed.ended);
  ASSERT_TRUE(killed.has_lost);
  EXPECT_EQ(killed.lost.found_by, 1);
  EXPECT_NE(killed.outcome.find("crashed"), std::string::npos) << killed.outcome;
  // No checkpoint: all of the killed restart's recorded time, plus what it ran after its last
  // record, is lost work.
  const double recorded = cost::total_seconds(killed.last.segments);
  EXPECT_GT(recorded, 0);
  EXPECT_GE(killed.lost.unrecorded_device_s, 0);
  EXPECT_NEAR(seg(killed.segments, Segment::kLostWork), recorded + killed.lost.unrecorded_device_s,
              1e-9 * recorded);
  EXPECT_EQ(killed.useful_tokens, 0);
  EXPECT_TRUE(second.ended);
  EXPECT_EQ(second.start.restart, 1);
  EXPECT_EQ(second.last.step, 10);
  EXPECT_EQ(seg(second.segments, Segment::kLostWork), 0);

  // The report shows both restarts and the lost work.
  const auto report = run_baleine("report " + run_);
  ASSERT_EQ(report.exit_code, 0) << report.output;
  std::ifstream md(run_ + "/cost-report.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("lost work"), std::string::npos) << text;
  EXPECT_NE(text.find("crashed"), std::string::npos) << text;
}

}  // namespace
}  // namespace baleine::testing
