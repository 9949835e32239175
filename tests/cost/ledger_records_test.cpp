// The GPU-hour ledger's data layer: records written by format_ledger_json / LedgerWriter read
// back exactly by read_ledger; bad lines reported with their line numbers and skipped; lost
// work derived as ledger.h documents, checked against numbers worked out by hand.
#include "trainer/cost/ledger.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/cost/ledger_test_support.h"
#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"

namespace baleine::cost {
namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// A finite double from random bits: every exponent, subnormals and both zeros included.
double random_finite_double(std::mt19937_64& rng) {
  while (true) {
    const uint64_t bits = rng();
    double value;
    std::memcpy(&value, &bits, sizeof(value));
    if (std::isfinite(value)) return value;
  }
}

// Every ASCII byte (control characters, quotes and backslashes included) plus some UTF-8.
std::string random_text(std::mt19937_64& rng) {
  std::string text;
  const size_t length = rng() % 24;
  for (size_t i = 0; i < length; ++i) text += static_cast<char>(rng() % 128);
  return text + "\xc3\xa9\"\\";  // "é", a quote and a backslash at the end every time
}

void expect_same(const LedgerStart& a, const LedgerStart& b) {
  EXPECT_EQ(a.restart, b.restart);
  EXPECT_TRUE(same_bits(a.unix_time, b.unix_time)) << a.unix_time << " vs " << b.unix_time;
  EXPECT_EQ(a.world, b.world);
  EXPECT_EQ(a.run_name, b.run_name);
  EXPECT_EQ(a.config, b.config);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.compute, b.compute);
  EXPECT_EQ(a.gpu, b.gpu);
  EXPECT_EQ(a.device_kind, b.device_kind);
  EXPECT_TRUE(same_bits(a.peak_bf16_tflops, b.peak_bf16_tflops));
  EXPECT_TRUE(same_bits(a.peak_fp8_tflops, b.peak_fp8_tflops));
  EXPECT_TRUE(same_bits(a.usd_per_gpu_hour, b.usd_per_gpu_hour));
  EXPECT_TRUE(same_bits(a.flops_per_token, b.flops_per_token));
  EXPECT_TRUE(same_bits(a.active_params, b.active_params));
  EXPECT_EQ(a.tokens_per_step, b.tokens_per_step);
  EXPECT_EQ(a.total_steps, b.total_steps);
  EXPECT_EQ(a.start_step, b.start_step);
  EXPECT_TRUE(same_bits(a.token_budget, b.token_budget));
}

void expect_same(const LedgerTick& a, const LedgerTick& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.restart, b.restart);
  EXPECT_TRUE(same_bits(a.unix_time, b.unix_time));
  EXPECT_TRUE(same_bits(a.wall_s, b.wall_s));
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.tokens, b.tokens);
  for (size_t s = 0; s < kSegmentCount; ++s) {
    EXPECT_TRUE(same_bits(a.segments[s], b.segments[s]))
        << segment_key(static_cast<Segment>(s)) << ": " << a.segments[s] << " vs "
        << b.segments[s];
  }
  EXPECT_EQ(a.status, b.status);
}

// --- format ------------------------------------------------------------------------------------

TEST(LedgerFormat, TypeAndRestartComeFirstAndKeysAreTheMemberNames) {
  LedgerStart start = make_start(3, 8);
  start.run_name = "a \"quoted\" name\\with\ttab\x01";
  const std::string start_json = format_ledger_json(start);
  EXPECT_EQ(start_json.rfind("{\"type\":\"start\",\"restart\":3,\"unix_time\":", 0), 0u)
      << start_json;
  EXPECT_NE(start_json.find("\"run_name\":\"a \\\"quoted\\\" name\\\\with\\ttab\\u0001\""),
            std::string::npos)
      << start_json;
  EXPECT_NE(start_json.find("\"world\":8"), std::string::npos);

  SegmentSeconds segments{};
  segments[static_cast<size_t>(Segment::kCompute)] = 0.1;
  const std::string progress = format_ledger_json(make_tick("progress", 2, 7, 70, segments, 1));
  EXPECT_EQ(progress.rfind("{\"type\":\"progress\",\"restart\":2,", 0), 0u) << progress;
  // Shortest round-trip text: 0.1, not 0.10000000000000001.
  EXPECT_NE(progress.find("\"segments\":{\"startup\":0,\"compute\":0.1,\"exposed_communication\""),
            std::string::npos)
      << progress;
  EXPECT_EQ(progress.find("status"), std::string::npos) << progress;
  EXPECT_EQ(progress.find('\n'), std::string::npos);
  const std::string end = format_ledger_json(make_tick("end", 2, 7, 70, segments, 1));
  EXPECT_NE(end.find(",\"status\":\"completed\"}"), std::string::npos) << end;

  LedgerTick bad = make_tick("progress", 0, 1, 1, segments, NAN);
  EXPECT_NE(format_ledger_json(bad).find("\"wall_s\":null"), std::string::npos)
      << "JSON has no NaN";
  EXPECT_EQ(format_ledger_json(make_lost(1, 2, 5)).rfind("{\"type\":\"lost\",\"restart\":1,"
                                                        "\"found_by\":2,",
                                                        0),
            0u);
}

// --- round trip ------------------------------------------------------------------------------

TEST(LedgerRoundTrip, EveryRecordTypeReadsBackExactly) {
  std::mt19937_64 rng(20240607);
  std::uniform_real_distribution<double> seconds(0.0, 1e4);
  const std::string path = baleine::testing::scratch_dir() + "/ledger.jsonl";
  std::vector<LedgerStart> starts;
  std::vector<std::vector<LedgerTick>> ticks;
  LedgerLost lost;
  {
    LedgerWriter writer(path, 0.0);  // 0: every progress record is due
    for (int64_t restart = 0; restart < 3; ++restart) {
      LedgerStart s;
      s.restart = restart;
      s.unix_time = 1.7e9 + seconds(rng);
      s.world = 1 + static_cast<int64_t>(rng() % 4096);
      s.run_name = random_text(rng);
      s.config = random_text(rng);
      s.phase = random_text(rng);
      s.compute = random_text(rng);
      s.gpu = random_text(rng);
      s.device_kind = random_text(rng);
      s.peak_bf16_tflops = random_finite_double(rng);
      s.peak_fp8_tflops = random_finite_double(rng);
      s.usd_per_gpu_hour = random_finite_double(rng);
      s.flops_per_token = random_finite_double(rng);
      s.active_params = random_finite_double(rng);
      s.tokens_per_step = static_cast<int64_t>(rng() >> 1);
      s.total_steps = -static_cast<int64_t>(rng() >> 1);  // any int64 survives
      s.start_step = static_cast<int64_t>(rng() % 100000);
      s.token_budget = random_finite_double(rng);
      writer.write(s);
      starts.push_back(s);
      if (restart == 2) {
        lost = make_lost(1, 2, seconds(rng));
        lost.estimated_end_unix_time = random_finite_double(rng);
        writer.write(lost);
      }
      // Cumulative ticks: random increments keep them non-decreasing, random doubles of every
      // magnitude exercise the number text.
      ticks.emplace_back();
      LedgerTick tick = make_tick("progress", restart, s.start_step, 0, {}, 0);
      for (int i = 0; i < 4; ++i) {
        tick.type = i == 1 ? "checkpoint" : "progress";
        if (restart != 1 && i == 3) tick.type = "end";
        tick.status = tick.type == "end" ? (restart == 0 ? "stopped" : "failed") : "";
        tick.unix_time = random_finite_double(rng);
        tick.wall_s += seconds(rng);
        tick.step += 1 + static_cast<int64_t>(rng() % 100);
        tick.tokens += static_cast<int64_t>(rng() % 1000000);
        for (double& v : tick.segments) {
          v += std::ldexp(seconds(rng), -static_cast<int>(rng() % 60));
        }
        ASSERT_TRUE(writer.write(tick));
        ticks.back().push_back(tick);
      }
    }
  }
  const LedgerContents contents = read_ledger(path);
  EXPECT_EQ(contents.path, path);
  EXPECT_TRUE(contents.problems.empty()) << describe(contents);
  EXPECT_EQ(contents.lines, 3 + 1 + 12);
  ASSERT_EQ(contents.restarts.size(), 3u);
  for (size_t r = 0; r < 3; ++r) {
    SCOPED_TRACE("restart " + std::to_string(r));
    const RestartRecord& record = contents.restarts[r];
    expect_same(record.start, starts[r]);
    ASSERT_TRUE(record.has_tick);
    expect_same(record.last, ticks[r].back());
    ASSERT_TRUE(record.has_checkpoint);
    expect_same(record.last_checkpoint, ticks[r][1]);
    EXPECT_EQ(record.ended, r != 1);
    EXPECT_EQ(record.has_lost, r == 1);
  }
  const LedgerLost& back = contents.restarts[1].lost;
  EXPECT_EQ(back.restart, lost.restart);
  EXPECT_EQ(back.found_by, lost.found_by);
  EXPECT_TRUE(same_bits(back.unrecorded_device_s, lost.unrecorded_device_s));
  EXPECT_TRUE(same_bits(back.estimated_end_unix_time, lost.estimated_end_unix_time));
  EXPECT_EQ(contents.restarts[0].outcome, "stopped");
  EXPECT_EQ(contents.restarts[1].outcome, "crashed (found by restart 2)");
  EXPECT_EQ(contents.restarts[2].outcome, "failed");
}

TEST(LedgerRoundTrip, RandomBitPatternsSurviveAsSegmentSeconds) {
  // 300 restarts of one progress record each: 2400 doubles from random bits, read back bit for
  // bit (shortest round-trip text on the way out, from_chars on the way in).
  std::mt19937_64 rng(7);
  std::vector<std::string> lines;
  std::vector<SegmentSeconds> written;
  for (int64_t r = 0; r < 300; ++r) {
    lines.push_back(format_ledger_json(make_start(r, 1)));
    SegmentSeconds s;
    for (double& v : s) v = random_finite_double(rng);
    written.push_back(s);
    lines.push_back(format_ledger_json(make_tick("progress", r, 1, 1, s, 1)));
  }
  const LedgerContents contents = read_ledger(write_file("ledger.jsonl", as_ledger(lines)));
  ASSERT_TRUE(contents.problems.empty()) << describe(contents);
  ASSERT_EQ(contents.restarts.size(), written.size());
  int mismatches = 0;
  for (size_t r = 0; r < written.size(); ++r) {
    for (size_t s = 0; s < kSegmentCount; ++s) {
      mismatches += !same_bits(contents.restarts[r].last.segments[s], written[r][s]);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// --- bad lines ---------------------------------------------------------------------------------

TEST(LedgerReader, CorruptMiddleLineAndTruncatedLastLineAreReportedAndSkipped) {
  const SegmentSeconds a{1, 2, 0, 0, 0, 0, 0, 0};
  const SegmentSeconds b{1, 4, 1, 0, 0.5, 0, 0, 0};
  const SegmentSeconds c{1, 6, 1, 0, 0.5, 0, 1, 0};
  const std::string last = format_ledger_json(make_tick("progress", 0, 5, 500, c, 4.3));
  const std::string text =
      as_ledger({format_ledger_json(make_start(0, 2)),                             // 1
                 format_ledger_json(make_tick("progress", 0, 1, 100, a, 1.5)),     // 2
                 "{\"type\":\"progress\",\"restart\":0,\"wall_s\":2,\"st",         // 3: torn
                 format_ledger_json(make_tick("checkpoint", 0, 3, 300, b, 3.25)),  // 4
                 format_ledger_json(make_tick("progress", 0, 4, 400, c, 4.0))}) +  // 5
      last.substr(0, last.size() / 2);                                              // 6: torn
  const LedgerContents contents = read_ledger(write_file("ledger.jsonl", text));
  EXPECT_EQ(contents.lines, 6);
  ASSERT_EQ(contents.problems.size(), 2u) << describe(contents);
  EXPECT_EQ(contents.problems[0].line, 3);
  EXPECT_NE(contents.problems[0].message.find("not a JSON object"), std::string::npos)
      << contents.problems[0].message;
  EXPECT_EQ(contents.problems[1].line, 6);
  EXPECT_NE(contents.problems[1].message.find("truncated"), std::string::npos)
      << contents.problems[1].message;
  // The good lines around them still count.
  ASSERT_EQ(contents.restarts.size(), 1u);
  const RestartRecord& r = contents.restarts[0];
  EXPECT_EQ(r.start.world, 2);
  EXPECT_EQ(r.last.step, 4);
  EXPECT_EQ(r.last.wall_s, 4.0);
  ASSERT_TRUE(r.has_checkpoint);
  EXPECT_EQ(r.last_checkpoint.step, 3);
  EXPECT_EQ(r.useful_tokens, 300);
}

TEST(LedgerReader, ACompleteLastLineWithoutItsNewlineStillCounts) {
  const std::string text =
      as_ledger({format_ledger_json(make_start(0, 1))}) +
      format_ledger_json(make_tick("end", 0, 2, 20, {1, 1, 0, 0, 0, 0, 0, 0}, 2));
  const LedgerContents contents = read_ledger(write_file("ledger.jsonl", text));
  EXPECT_TRUE(contents.problems.empty()) << describe(contents);
  ASSERT_EQ(contents.restarts.size(), 1u);
  EXPECT_TRUE(contents.restarts[0].ended);
}

struct BadLedgerCase {
  const char* name;
  std::vector<std::string> lines;
  int64_t bad_line;
  std::string message_part;
};

TEST(LedgerReader, EachKindOfBadLineIsReportedWithItsLineNumber) {
  const SegmentSeconds s1{1, 2, 3, 0, 0, 0, 0, 0};
  const SegmentSeconds s2{1, 3, 3, 0, 0, 0, 0, 0};
  const std::string start0 = format_ledger_json(make_start(0, 2));
  const std::string start1 = format_ledger_json(make_start(1, 2));
  const std::string tick1 = format_ledger_json(make_tick("progress", 0, 7, 70, s1, 3));
  const std::string tick2 = format_ledger_json(make_tick("progress", 0, 8, 80, s2, 3.5));
  const std::string end2 = format_ledger_json(make_tick("end", 0, 8, 80, s2, 3.5));
  const std::vector<BadLedgerCase> cases = {
      {"array", {start0, "[1,2,3]"}, 2, "not a JSON object"},
      {"scalar", {"hello", start0}, 1, "not a JSON object"},
      {"no type", {start0, "{\"restart\":0}"}, 2, "without a \"type\""},
      {"unknown type", {start0, "{\"type\":\"pause\",\"restart\":0}"}, 2,
       "unknown record type \"pause\""},
      {"missing field", {replaced(start0, ",\"world\":2", "")}, 1,
       "missing required field \"world\""},
      {"integer as string", {start0, replaced(tick1, "\"step\":7", "\"step\":\"7\"")}, 2,
       "field \"step\" should be an integer, got the string \"7\""},
      {"integer as fraction", {start0, replaced(tick1, "\"step\":7", "\"step\":7.5")}, 2,
       "field \"step\" should be an integer"},
      {"number as null", {start0, replaced(tick1, "\"wall_s\":3", "\"wall_s\":null")}, 2,
       "field \"wall_s\" should be a finite number, got null"},
      {"string as number", {replaced(start0, "\"run_name\":\"test\"", "\"run_name\":12")}, 1,
       "field \"run_name\" should be a string"},
      {"segment missing", {start0, replaced(tick1, ",\"idle\":0", "")}, 2,
       "lacks the segment \"idle\""},
      {"segment unknown", {start0, replaced(tick1, "\"idle\":0", "\"idle\":0,\"naps\":1")}, 2,
       "unknown segment \"naps\""},
      {"world zero", {replaced(start0, "\"world\":2", "\"world\":0")}, 1, "world 0 < 1"},
      {"tick without start", {tick1}, 1, "restart 0, which has no start record"},
      {"lost without start", {format_ledger_json(make_lost(0, 1, 2))}, 1,
       "restart 0, which has no start record"},
      {"duplicate start", {start0, tick1, start0}, 3, "already started at line 1"},
      {"restart backwards", {start1, start0}, 2, "restart numbers go backwards"},
      {"tick of an older restart", {start0, tick1, start1, tick2}, 4,
       "restart numbers go backwards"},
      {"segment decreases",
       {start0, tick2, format_ledger_json(make_tick("progress", 0, 9, 90, s1, 4))}, 3,
       "segment \"compute\" decreases from 3"},
      {"step decreases", {start0, tick2, replaced(tick2, "\"step\":8", "\"step\":6")}, 3,
       "step decreases from 8 (line 2) to 6"},
      {"tokens decrease", {start0, tick2, replaced(tick2, "\"tokens\":80", "\"tokens\":79")}, 3,
       "tokens decrease"},
      {"tick after end", {start0, end2, tick2}, 3, "after its end record at line 2"},
      {"end with bad status", {start0, replaced(end2, "completed", "done")}, 2,
       "status \"done\""},
      {"lost of an ended restart", {start0, end2, start1, format_ledger_json(make_lost(0, 1, 2))},
       4, "did not crash"},
      {"lost found by itself", {start0, format_ledger_json(make_lost(0, 0, 2))}, 2,
       "found_by must be a later restart"},
      {"lost twice",
       {start0, start1, format_ledger_json(make_lost(0, 1, 2)),
        format_ledger_json(make_lost(0, 1, 2))},
       4, "already has a lost record at line 3"},
  };
  for (const BadLedgerCase& c : cases) {
    SCOPED_TRACE(c.name);
    const LedgerContents contents = read_ledger(write_file("ledger.jsonl", as_ledger(c.lines)));
    EXPECT_EQ(contents.lines, static_cast<int64_t>(c.lines.size()));
    ASSERT_EQ(contents.problems.size(), 1u) << describe(contents);
    EXPECT_EQ(contents.problems[0].line, c.bad_line);
    EXPECT_NE(contents.problems[0].message.find(c.message_part), std::string::npos)
        << contents.problems[0].message;
  }
}

TEST(LedgerReader, EmptyFileMissingFileAndRunDirectory) {
  const LedgerContents empty = read_ledger(write_file("ledger.jsonl", ""));
  EXPECT_EQ(empty.lines, 0);
  EXPECT_TRUE(empty.restarts.empty());
  EXPECT_TRUE(empty.problems.empty());

  const std::string dir = baleine::testing::scratch_dir();
  baleine::testing::expect_user_error([&] { read_ledger(dir + "/nowhere.jsonl"); },
                                      {dir + "/nowhere.jsonl", "No such file", "HINT: "});
  // A run directory stands for its ledger.jsonl.
  std::ofstream(dir + "/ledger.jsonl") << as_ledger({format_ledger_json(make_start(0, 3))});
  const LedgerContents from_dir = read_ledger(dir);
  EXPECT_EQ(from_dir.path, dir + "/ledger.jsonl");
  ASSERT_EQ(from_dir.restarts.size(), 1u);
  EXPECT_EQ(from_dir.restarts[0].start.world, 3);
}

// --- derivations -----------------------------------------------------------------------------

TEST(LedgerDerivation, LostWorkWorkedOutByHand) {
  // Restart 0 (2 ranks) checkpoints, trains on, and dies; restart 1 finds it (3 device-seconds
  // after its last record never got written) and completes. Restart 2 has no checkpoint and no
  // end; restart 3 started, wrote nothing else, and was found crashed by restart 4.
  // Segments: startup, compute, exposed comm, bubble, checkpoint I/O, evaluation, idle, lost.
  const SegmentSeconds at_checkpoint{10, 20, 4, 0, 2, 0, 1, 0};     // sum 37
  const SegmentSeconds at_crash{10, 35, 7, 0, 2, 1, 1.5, 0};        // sum 56.5
  const SegmentSeconds completed{5, 50, 10, 2, 1, 0, 2, 0};         // sum 70
  const SegmentSeconds no_checkpoint{1, 2, 3, 4, 5, 6, 7, 0.5};     // sum 28.5
  const std::vector<std::string> lines = {
      format_ledger_json(make_start(0, 2)),
      format_ledger_json(make_tick("checkpoint", 0, 10, 1000, at_checkpoint, 18.5)),
      format_ledger_json(make_tick("progress", 0, 18, 1800, at_crash, 28.25)),
      format_ledger_json(make_start(1, 2)),
      format_ledger_json(make_lost(0, 1, 3.0)),
      format_ledger_json(make_tick("end", 1, 40, 4000, completed, 35)),
      format_ledger_json(make_start(2, 1)),
      format_ledger_json(make_tick("progress", 2, 45, 500, no_checkpoint, 28.5)),
      format_ledger_json(make_start(3, 4)),
      format_ledger_json(make_start(4, 4)),
      format_ledger_json(make_lost(3, 4, 12.0)),
  };
  const LedgerContents contents = read_ledger(write_file("ledger.jsonl", as_ledger(lines)));
  ASSERT_TRUE(contents.problems.empty()) << describe(contents);
  ASSERT_EQ(contents.restarts.size(), 5u);

  const RestartRecord& crashed = contents.restarts[0];
  EXPECT_EQ(crashed.outcome, "crashed (found by restart 1)");
  // Each segment as at the checkpoint; lost = (35-20)+(7-4)+(1-0)+(1.5-1) + 3 unrecorded = 22.5.
  const SegmentSeconds expected_crashed{10, 20, 4, 0, 2, 0, 1, 22.5};
  for (size_t s = 0; s < kSegmentCount; ++s) {
    EXPECT_DOUBLE_EQ(crashed.segments[s], expected_crashed[s]) << segment_key(Segment(s));
  }
  EXPECT_DOUBLE_EQ(total_seconds(crashed.segments), 56.5 + 3.0);
  EXPECT_EQ(crashed.useful_tokens, 1000);
  EXPECT_EQ(crashed.last_step, 18);
  EXPECT_DOUBLE_EQ(crashed.wall_s, 28.25 + 3.0 / 2);  // 3 device-seconds over 2 ranks

  const RestartRecord& done = contents.restarts[1];
  EXPECT_EQ(done.outcome, "completed");
  EXPECT_EQ(done.segments, completed);
  EXPECT_EQ(done.useful_tokens, 4000);
  EXPECT_EQ(done.last_step, 40);
  EXPECT_EQ(done.wall_s, 35.0);

  const RestartRecord& open = contents.restarts[2];
  EXPECT_EQ(open.outcome, "no end record (still running, or crashed and not resumed)");
  for (size_t s = 0; s < kLost; ++s) EXPECT_EQ(open.segments[s], 0.0);
  EXPECT_DOUBLE_EQ(open.segments[kLost], 28.5);  // all of it, its own 0.5 lost included
  EXPECT_EQ(open.useful_tokens, 0);
  EXPECT_EQ(open.wall_s, 28.5);

  const RestartRecord& silent = contents.restarts[3];
  EXPECT_FALSE(silent.has_tick);
  EXPECT_EQ(silent.outcome, "crashed (found by restart 4)");
  EXPECT_EQ(silent.segments[kLost], 12.0);
  EXPECT_EQ(total_seconds(silent.segments), 12.0);
  EXPECT_EQ(silent.wall_s, 3.0);  // 12 device-seconds over 4 ranks
}

TEST(LedgerDerivation, SegmentsAlwaysSumToTheRecordedTotalAndToWorldTimesWall) {
  // Random ledgers: restarts with random cumulative ticks, checkpoints anywhere, each ending,
  // crashing (found by the next restart) or left open. For every restart the derived segments
  // must add up to its last recorded total plus the unrecorded time, equal world x wall_s, keep
  // every non-lost segment as it stood at the last checkpoint, and never go negative.
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> step_seconds(0.0, 5.0);
  for (int trial = 0; trial < 25; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    std::vector<std::string> lines;
    const int restarts = 1 + static_cast<int>(rng() % 4);
    std::vector<int> fate(restarts);  // 0 open, 1 ended, 2 crashed and found
    for (int r = 0; r < restarts; ++r) {
      const int64_t world = 1 + static_cast<int64_t>(rng() % 8);
      lines.push_back(format_ledger_json(make_start(r, world)));
      if (r > 0 && fate[r - 1] == 2) {
        const double unrecorded = step_seconds(rng) * static_cast<double>(world);
        lines.push_back(format_ledger_json(make_lost(r - 1, r, unrecorded)));
      }
      fate[r] = r + 1 < restarts ? static_cast<int>(rng() % 3) : static_cast<int>(rng() % 2);
      LedgerTick tick = make_tick("progress", r, 0, 0, {}, 0);
      const int ticks = static_cast<int>(rng() % 7);
      for (int i = 0; i < ticks; ++i) {
        for (size_t s = 0; s < kLost; ++s) tick.segments[s] += step_seconds(rng);
        tick.wall_s = total_seconds(tick.segments) / static_cast<double>(world);
        tick.step += 1;
        tick.tokens += 64;
        tick.type = rng() % 3 == 0 ? "checkpoint" : "progress";
        if (fate[r] == 1 && i + 1 == ticks) tick.type = "end";
        tick.status = tick.type == "end" ? "completed" : "";
        lines.push_back(format_ledger_json(tick));
      }
      if (fate[r] == 1 && ticks == 0) fate[r] = 0;  // no tick, so no end record either
    }
    const LedgerContents contents = read_ledger(write_file("ledger.jsonl", as_ledger(lines)));
    ASSERT_TRUE(contents.problems.empty()) << describe(contents);
    ASSERT_EQ(contents.restarts.size(), static_cast<size_t>(restarts));
    for (const RestartRecord& r : contents.restarts) {
      const double recorded = r.has_tick ? total_seconds(r.last.segments) : 0.0;
      const double unrecorded = r.has_lost ? r.lost.unrecorded_device_s : 0.0;
      const double derived = total_seconds(r.segments);
      // Rounding only: a few additions of numbers below 200 s.
      EXPECT_NEAR(derived, recorded + unrecorded, 1e-9);
      EXPECT_NEAR(derived, static_cast<double>(r.start.world) * r.wall_s, 1e-9);
      for (double v : r.segments) EXPECT_GE(v, -1e-12);
      if (!r.ended) {
        for (size_t s = 0; s < kLost; ++s) {
          EXPECT_EQ(r.segments[s], r.has_checkpoint ? r.last_checkpoint.segments[s] : 0.0);
        }
      }
    }
  }
}

}  // namespace
}  // namespace baleine::cost
