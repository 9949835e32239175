// LedgerWriter: progress records only when due, the others always, each one whole line; a line
// torn by a crash is ended before the next restart appends; write errors name the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/cost/ledger_test_support.h"
#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"
#include "trainer/cost/ledger.h"

namespace baleine::cost {
namespace {

TEST(LedgerWriter, ProgressOnlyWhenDueOthersAlways) {
  const std::string path = baleine::testing::scratch_dir() + "/ledger.jsonl";
  const SegmentSeconds s{1, 1, 0, 0, 0, 0, 0, 0};
  LedgerWriter writer(path, 0.2);
  EXPECT_EQ(writer.path(), path);
  writer.write(make_start(0, 1));
  // The start was just written, so the first progress record is not due yet.
  EXPECT_FALSE(writer.write(make_tick("progress", 0, 1, 10, s, 2)));
  EXPECT_TRUE(writer.write(make_tick("progress", 0, 2, 20, s, 2), /*force=*/true));
  EXPECT_FALSE(writer.write(make_tick("progress", 0, 3, 30, s, 2)));
  EXPECT_TRUE(writer.write(make_tick("checkpoint", 0, 4, 40, s, 2)));
  EXPECT_FALSE(writer.write(make_tick("progress", 0, 5, 50, s, 2)));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // > flush_every_s
  EXPECT_TRUE(writer.write(make_tick("progress", 0, 6, 60, s, 2)));
  EXPECT_FALSE(writer.write(make_tick("progress", 0, 7, 70, s, 2)));
  EXPECT_TRUE(writer.write(make_tick("end", 0, 8, 80, s, 2)));

  // Each record landed whole, one per line, and nothing else did.
  const std::string text = read_text(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5);
  EXPECT_EQ(text.back(), '\n');
  const LedgerContents contents = read_ledger(path);
  EXPECT_TRUE(contents.problems.empty()) << describe(contents);
  EXPECT_EQ(contents.lines, 5);
  ASSERT_EQ(contents.restarts.size(), 1u);
  EXPECT_EQ(contents.restarts[0].last_checkpoint.step, 4);
  EXPECT_EQ(contents.restarts[0].last.step, 8);
  EXPECT_EQ(contents.restarts[0].outcome, "completed");
}

TEST(LedgerWriter, AppendsAfterARestartAndEndsATornLineFirst) {
  const std::string start = format_ledger_json(make_start(0, 1));
  const std::string progress =
      format_ledger_json(make_tick("progress", 0, 1, 10, {1, 0, 0, 0, 0, 0, 0, 0}, 1));
  // Restart 0 was killed in the middle of its second record.
  const std::string path =
      write_file("ledger.jsonl", as_ledger({start}) + progress.substr(0, progress.size() - 9));
  {
    LedgerWriter writer(path, 60.0);
    writer.write(make_start(1, 1));
    writer.write(make_lost(0, 1, 4.0));
  }
  const LedgerContents contents = read_ledger(path);
  EXPECT_EQ(contents.lines, 4);
  // The torn line stays one bad line of its own; the new records are intact after it.
  ASSERT_EQ(contents.problems.size(), 1u) << describe(contents);
  EXPECT_EQ(contents.problems[0].line, 2);
  ASSERT_EQ(contents.restarts.size(), 2u);
  EXPECT_EQ(contents.restarts[0].outcome, "crashed (found by restart 1)");
  EXPECT_EQ(contents.restarts[0].segments[kLost], 4.0);
}

TEST(LedgerWriter, RejectsTicksTheReaderWouldReject) {
  LedgerWriter writer(baleine::testing::scratch_dir() + "/ledger.jsonl", 0.0);
  EXPECT_THROW(writer.write(make_tick("pause", 0, 1, 1, {}, 1)), std::invalid_argument);
  LedgerTick end = make_tick("end", 0, 1, 1, {}, 1);
  end.status = "";
  EXPECT_THROW(writer.write(end), std::invalid_argument);
}

TEST(LedgerWriter, OpenAndWriteErrorsNameTheFile) {
  const std::string missing = baleine::testing::scratch_dir() + "/no/such/dir/ledger.jsonl";
  baleine::testing::expect_user_error([&] { LedgerWriter writer(missing, 1.0); },
                                      {missing, "No such file", "HINT: ", "disk"});
  // /dev/full accepts the open and fails every write with ENOSPC: a full disk, on demand.
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  LedgerWriter writer("/dev/full", 1.0);
  baleine::testing::expect_user_error([&] { writer.write(make_start(0, 1)); },
                                      {"/dev/full", "No space left on device", "HINT: "});
}

}  // namespace
}  // namespace baleine::cost
