// `baleine schedule`: the configured pipeline schedule is printed, simulated against the
// published bubble and drawn as an SVG; a misconfigured pipeline exits 2 before anything runs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli/cli_support.h"

namespace baleine::testing {
namespace {

const std::string kConfig = std::string(BALEINE_SOURCE_DIR) + "/configs/quickstart.yaml";

TEST(ScheduleCommand, DualPipeVMatchesThePublishedBubbleAndDrawsTheTimeline) {
  const std::string svg = scratch_dir() + "/timeline.svg";
  const auto r = run_baleine("schedule " + kConfig +
                             " --set parallel.pp=4 --set parallel.schedule=dualpipev "
                             "--set parallel.dp=1 --set parallel.ep=1 --set train.micro_batch=2 "
                             "--set model.layers=8 --costs 1,2,1,3 "
                             "--svg " + svg);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("schedule: dualpipev, 4 pipeline rank(s), 8 micro-batches"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 0 holds s0 s7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("8 blocks over 8 stages:\n  stage 0: embedding + blocks 0-0\n"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stage 7: blocks 7-7 + final norm, head, loss"), std::string::npos);
  EXPECT_NE(r.output.find("(PP/2-1)(F&B+B-3W) = 3 x 2 = 6 (PP = 8); simulated, worst rank: 6 "
                          "(equal)"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("peak activations 9"), std::string::npos) << r.output;  // PP + 1
  std::ifstream in(svg);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str().rfind("<svg ", 0), 0u);
  EXPECT_NE(text.str().find("F&amp;B"), std::string::npos);  // well-formed XML
  EXPECT_EQ(text.str().find("F&B"), std::string::npos);
}

TEST(ScheduleCommand, OneFOneBOnTwoRanks) {
  const auto r = run_baleine("schedule " + kConfig + " --set parallel.schedule=1f1b "
                             "--set parallel.pp=2 --set parallel.dp=1 --set parallel.ep=1 "
                             "--set train.micro_batch=4 --svg " + scratch_dir() + "/t.svg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(PP-1)(F+B) = 1 x 3 = 3 (PP = 2); simulated, worst rank: 3 (equal)"),
            std::string::npos) << r.output;
}

TEST(ScheduleCommand, OnePipelineRankShowsWhatTrainingRuns) {
  // With pp = 1 training runs no pipeline schedule (train::plan_pipeline), so a one-block model
  // under the quickstart's dualpipev is fine: one stage, F and B per micro-batch. (The command
  // used to build DualPipeV's two stages for the one rank and stop with an internal error.)
  const auto r = run_baleine("schedule " + kConfig +
                             " --set parallel.pp=1 --set model.layers=1 --set model.dense_layers=1"
                             " --svg " + scratch_dir() + "/one.svg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("schedule: none (parallel.pp is 1, so parallel.schedule: dualpipev "
                          "does not apply)"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 block over 1 stage:\n  stage 0: embedding + blocks 0-0 + final norm"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("F s0 m0, B s0 m0, F s0 m1"), std::string::npos) << r.output;
}

TEST(ScheduleCommand, MisconfiguredPipelinesExit2) {
  auto r = run_baleine("schedule " + kConfig + " --set parallel.pp=3 --set parallel.schedule=dualpipe");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("DualPipe needs an even number of pipeline ranks, got 3"), std::string::npos);
  r = run_baleine("schedule " + kConfig +
                  " --set parallel.pp=2 --set parallel.schedule=dualpipev --set train.micro_batch=4");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("needs at least 2 x parallel.pp = 4 micro-batches"), std::string::npos);
  r = run_baleine("schedule " + kConfig + " --costs 1,2,3,4");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("W (part of the full backward) must be <= B"), std::string::npos);
  EXPECT_EQ(run_baleine("schedule").exit_code, 2);
}

}  // namespace
}  // namespace baleine::testing
