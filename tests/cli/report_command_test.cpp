// `baleine report` as a user runs it: a crafted ledger (a killed restart and its resume) gives
// the three files with the figures worked out by hand; a corrupt line is warned about with its
// line number and the report is still written; a missing run dir is refused with a hint;
// several inputs merge into DeepSeek-V3's Table 1 shape.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli/cli_support.h"
#include "trainer/cost/ledger.h"
#include "trainer/cost/report.h"

namespace baleine::testing {
namespace {

namespace fs = std::filesystem;
using cost::Segment;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

cost::LedgerTick tick(const std::string& type, int64_t restart, double wall_s, int64_t step,
                      int64_t tokens, double startup, double compute, double evaluation,
                      double idle) {
  cost::LedgerTick t;
  t.type = type;
  t.restart = restart;
  t.unix_time = 1.7e9 + wall_s;
  t.wall_s = wall_s;
  t.step = step;
  t.tokens = tokens;
  t.segments[static_cast<size_t>(Segment::kStartup)] = startup;
  t.segments[static_cast<size_t>(Segment::kCompute)] = compute;
  t.segments[static_cast<size_t>(Segment::kEvaluation)] = evaluation;
  t.segments[static_cast<size_t>(Segment::kIdle)] = idle;
  if (type == "end") t.status = "completed";
  return t;
}

cost::LedgerStart start(int64_t restart, const std::string& phase) {
  cost::LedgerStart s;
  s.restart = restart;
  s.unix_time = 1.7e9;
  s.world = 4;
  s.run_name = "tiny";
  s.config = "tiny.yaml";
  s.phase = phase;
  s.compute = "fp32";
  s.gpu = "cpu";
  s.device_kind = "cpu";
  s.peak_bf16_tflops = 0.1;
  s.usd_per_gpu_hour = 0.5;
  s.flops_per_token = 1e6;
  s.active_params = 1e5;
  s.tokens_per_step = 1000;
  s.total_steps = 10000;
  s.token_budget = 1e7;
  return s;
}

// Four CPU ranks. Restart 0 checkpoints at 900 s (3600 device-s, 1M tokens), runs on to
// 1350 s and is killed; restart 1 finds it (1800 device-s unrecorded), checkpoints and ends at
// 2700 s (10800 device-s, 3M tokens). Lost work: (5400 - 3600) + 1800 = 3600 device-s = 1 h;
// restart 0 costs 7200 device-s = 2 h, restart 1 3 h: 5 device-hours for 4M useful tokens.
std::vector<std::string> crafted_ledger(const std::string& phase) {
  cost::LedgerLost lost;
  lost.restart = 0;
  lost.found_by = 1;
  lost.unrecorded_device_s = 1800;
  lost.estimated_end_unix_time = 1.7e9 + 1800;
  return {
      cost::format_ledger_json(start(0, phase)),
      cost::format_ledger_json(tick("progress", 0, 450, 50, 500000, 400, 1000, 0, 400)),
      cost::format_ledger_json(tick("checkpoint", 0, 900, 100, 1000000, 400, 2800, 0, 400)),
      cost::format_ledger_json(tick("progress", 0, 1350, 150, 1500000, 400, 4600, 0, 400)),
      cost::format_ledger_json(start(1, phase)),
      cost::format_ledger_json(lost),
      cost::format_ledger_json(tick("checkpoint", 1, 1800, 300, 2000000, 400, 6400, 0, 400)),
      cost::format_ledger_json(tick("end", 1, 2700, 400, 3000000, 400, 9600, 400, 400)),
  };
}

void write_ledger(const std::string& run_dir, const std::vector<std::string>& lines,
                  const std::string& unterminated_tail = "") {
  fs::create_directories(run_dir);
  std::ofstream out(run_dir + "/ledger.jsonl");
  for (const std::string& l : lines) out << l << "\n";
  out << unterminated_tail;
}

TEST(ReportCommand, CraftedLedgerGivesTheThreeFilesWithTheHandWorkedFigures) {
  const std::string run = scratch_dir() + "/run";
  write_ledger(run, crafted_ledger("pretraining"));
  const auto r = run_baleine("report " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"/cost-report.md", "/cost-report.json", "/cost-report.svg"}) {
    EXPECT_TRUE(fs::exists(run + name)) << name;
    EXPECT_NE(r.output.find("wrote " + run + name), std::string::npos) << r.output;
  }
  // The printed summary: 5 device-hours on 4 CPU ranks, 4M tokens, 800K tokens per hour,
  // 1250K hours per 1T tokens, $2.5 at $0.5/h; MFU = 4e6 x 1e6 / (18000 s x 0.1e12) = 0.222%.
  EXPECT_NE(r.output.find("| tiny | Pre-Training | 4 × cpu | 5 |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| 4M | 800K | 1250K | 0.222% of BF16 peak | $2.5 |"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;

  const std::string md = read_text(run + "/cost-report.md");
  EXPECT_NE(md.find("| lost work | 1 | 20.0% |"), std::string::npos) << md;
  EXPECT_NE(md.find("| evaluation | 0.1111 |"), std::string::npos) << md;  // 400 device-s
  // Restart 0: wall 1350 s + 1800/4 s unrecorded = 0.5 h; 2 device-hours, 1 of them lost.
  EXPECT_NE(md.find("| tiny | 0 | crashed (found by restart 1) | 4 | 0.5 | 2 | 1 | 1M | 150 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| tiny | 1 | completed | 4 | 0.75 | 3 | 0 | 3M | 400 |"), std::string::npos)
      << md;
  // The 10M-token budget at 800K tokens per device-hour: 12.5 device-hours, $6.25.
  EXPECT_NE(md.find("| tiny | 10M | 4M | 800K | 12.5 |"), std::string::npos) << md;
  EXPECT_NE(md.find("$6.25"), std::string::npos) << md;
  EXPECT_NE(md.find("DeepSeek-V3 (published)"), std::string::npos);
  EXPECT_NE(md.find("None: every ledger line was read."), std::string::npos);

  const cost::CostReport back = cost::read_report_json(run + "/cost-report.json");
  ASSERT_EQ(back.rows.size(), 1u);
  EXPECT_NEAR(back.rows[0].device_hours, 5.0, 1e-12);
  EXPECT_EQ(back.rows[0].source, run);
  const std::string svg = read_text(run + "/cost-report.svg");
  EXPECT_NE(svg.find("viewBox"), std::string::npos);
  EXPECT_NE(svg.find("tiny, restart 1"), std::string::npos);
}

TEST(ReportCommand, CorruptLinesAreWarnedAboutByNumberAndTheReportIsStillWritten) {
  const std::string run = scratch_dir() + "/run";
  std::vector<std::string> lines = crafted_ledger("pretraining");
  // Line 4 (a progress record of restart 0) becomes garbage; the last line is cut mid-write.
  lines[3] = "{\"type\":\"progress\",\"restart\":0,\"wall_s\":13";
  write_ledger(run, lines, "{\"type\":\"progress\",\"resta");
  const auto r = run_baleine("report " + run + "/");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(run + "/ledger.jsonl:4: warning:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(run + "/ledger.jsonl:9: warning:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 ledger line(s) skipped"), std::string::npos) << r.output;
  const std::string md = read_text(run + "/cost-report.md");
  EXPECT_NE(md.find("## Ledger problems"), std::string::npos);
  EXPECT_NE(md.find("`" + run + "/ledger.jsonl:4`"), std::string::npos) << md;
  EXPECT_NE(md.find("`" + run + "/ledger.jsonl:9`: truncated"), std::string::npos) << md;
  // Without line 4 restart 0's last record is its checkpoint: lost work is the 1800 unrecorded
  // device-seconds alone, and the total is 3600 + 1800 + 10800 device-s = 4.5 h.
  EXPECT_NE(md.find("| lost work | 0.5 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| all segments | 4.5 |"), std::string::npos) << md;
}

TEST(ReportCommand, MissingRunDirOrLedgerIsRefusedWithAHint) {
  const std::string dir = scratch_dir();
  const auto missing = run_baleine("report " + dir + "/nowhere");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find(dir + "/nowhere"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("HINT"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("baleine train"), std::string::npos) << missing.output;

  fs::create_directories(dir + "/empty");
  const auto no_ledger = run_baleine("report " + dir + "/empty");
  EXPECT_EQ(no_ledger.exit_code, 2) << no_ledger.output;
  EXPECT_NE(no_ledger.output.find("ledger.jsonl"), std::string::npos) << no_ledger.output;

  const auto nothing = run_baleine("report");
  EXPECT_EQ(nothing.exit_code, 2) << nothing.output;
  const auto help = run_baleine("report --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--output"), std::string::npos);
}

TEST(ReportCommand, SeveralInputsMergeIntoTableOneAndNeedAnOutputDir) {
  const std::string dir = scratch_dir();
  write_ledger(dir + "/pre", crafted_ledger("pretraining"));
  write_ledger(dir + "/ctx", crafted_ledger("context_extension"));
  // A planned post-training phase, as an earlier report's JSON: its row stays "planned".
  cost::CostRow planned;
  planned.name = "post";
  planned.phase = "post_training";
  planned.planned = true;
  planned.source = "post.yaml";
  planned.gpu = "cpu";
  planned.device_kind = "cpu";
  planned.world = 4;
  planned.peak_bf16_tflops = 0.1;
  planned.usd_per_gpu_hour = 0.5;
  planned.device_hours = 2;
  planned.h800_equivalent_hours = 2 * 0.1 / 989.5;
  planned.usd = 1;
  cost::write_report_files(cost::make_report({planned}), dir + "/plan");

  const std::string inputs = dir + "/pre " + dir + "/ctx " + dir + "/plan/cost-report.json";
  const auto refused = run_baleine("report " + inputs);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("--output"), std::string::npos) << refused.output;

  const auto r = run_baleine("report " + inputs + " --output " + dir + "/merged");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| Training Costs | Pre-Training | Context Extension | Post-Training | "
                          "Total |"),
            std::string::npos)
      << r.output;
  // USD: $2.5 + $2.5 measured + $1 planned.
  EXPECT_NE(r.output.find("| in USD | $2.5 | $2.5 | $1 | $6 |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Planned, not measured: post (Post-Training)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| post (planned) |"), std::string::npos) << r.output;
  const cost::CostReport merged = cost::read_report_json(dir + "/merged/cost-report.json");
  ASSERT_EQ(merged.rows.size(), 3u);
  EXPECT_TRUE(merged.rows[2].planned);
  EXPECT_NEAR(merged.total.device_hours, 12.0, 1e-12);
  EXPECT_FALSE(fs::exists(dir + "/pre/cost-report.md"));  // inputs are left alone
}

}  // namespace
}  // namespace baleine::testing
