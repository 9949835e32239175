#pragma once
// Building and reading ledger files in the ledger's tests (ledger_records_test.cpp,
// ledger_writer_test.cpp).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/scratch_dir.h"
#include "trainer/cost/ledger.h"

namespace baleine::cost {

constexpr size_t kLost = static_cast<size_t>(Segment::kLostWork);

inline std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = baleine::testing::scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Lines joined, each ending in '\n' as the writer leaves them.
inline std::string as_ledger(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

// Replaces the one occurrence of `from` (the test fails if it is not there).
inline std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from << " not in " << text;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

inline LedgerStart make_start(int64_t restart, int64_t world) {
  LedgerStart s;
  s.restart = restart;
  s.unix_time = 1.7e9 + static_cast<double>(restart);
  s.world = world;
  s.run_name = "test";
  return s;
}

inline LedgerTick make_tick(const std::string& type, int64_t restart, int64_t step, int64_t tokens,
                     const SegmentSeconds& segments, double wall_s) {
  LedgerTick t;
  t.type = type;
  t.restart = restart;
  t.step = step;
  t.tokens = tokens;
  t.segments = segments;
  t.wall_s = wall_s;
  if (type == "end") t.status = "completed";
  return t;
}

inline LedgerLost make_lost(int64_t restart, int64_t found_by, double unrecorded_device_s) {
  LedgerLost l;
  l.restart = restart;
  l.found_by = found_by;
  l.unrecorded_device_s = unrecorded_device_s;
  l.estimated_end_unix_time = 1.7e9 + 100;
  return l;
}

inline std::string describe(const LedgerContents& contents) {
  std::string text;
  for (const LedgerProblem& p : contents.problems) {
    text += "line " + std::to_string(p.line) + ": " + p.message + "\n";
  }
  return text;
}

}  // namespace baleine::cost
