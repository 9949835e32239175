// The cost report (trainer/cost/report.h): rows from hand-built ledgers checked against
// figures worked out by hand, merging DeepSeek-V3's three phases into its Table 1, the
// Markdown's tables well-formed, the JSON read back field for field, the SVG well-formed.
#include "trainer/cost/report.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/scratch_dir.h"
#include "trainer/errors.h"

namespace baleine::cost {
namespace {

constexpr size_t kLost = static_cast<size_t>(Segment::kLostWork);

// `total_s` device-seconds split at random over the measured segments (never zero), plus
// `lost_s` of lost work: the totals are what the test checks by hand, the split is what the
// report must carry through unchanged.
SegmentSeconds random_split(std::mt19937* rng, double total_s, double lost_s) {
  std::uniform_real_distribution<double> weight(0.05, 1.0);
  SegmentSeconds s{};
  double sum = 0;
  for (size_t i = 0; i < kLost; ++i) sum += s[i] = weight(*rng);
  for (size_t i = 0; i < kLost; ++i) s[i] *= (total_s - lost_s) / sum;
  s[kLost] = lost_s;
  return s;
}

LedgerStart start_record(int64_t restart, const std::string& gpu, double peak_bf16,
                         double peak_fp8, const std::string& compute) {
  LedgerStart s;
  s.restart = restart;
  s.world = 8;
  s.run_name = "ctx-run";
  s.phase = "pretraining";
  s.compute = compute;
  s.gpu = gpu;
  s.device_kind = "gpu";
  s.peak_bf16_tflops = peak_bf16;
  s.peak_fp8_tflops = peak_fp8;
  s.usd_per_gpu_hour = 1.5;
  s.flops_per_token = 6e9;
  s.active_params = 1e9;
  s.token_budget = 1e12;
  return s;
}

RestartRecord restart_record(const LedgerStart& start, const SegmentSeconds& segments,
                             int64_t useful_tokens, const std::string& outcome) {
  RestartRecord r;
  r.start = start;
  r.outcome = outcome;
  r.segments = segments;
  r.wall_s = total_seconds(segments) / static_cast<double>(start.world);
  r.useful_tokens = useful_tokens;
  r.last_step = useful_tokens / 1000000;
  return r;
}

// Two restarts on 8 A100-80s: restart 0 crashed after 10 device-hours (0.5 of them lost work,
// 3e8 useful tokens), restart 1 completed in 20 device-hours with 6e8 tokens.
LedgerContents a100_ledger() {
  std::mt19937 rng(1234);
  LedgerContents ledger;
  ledger.path = "/runs/ctx/ledger.jsonl";
  ledger.restarts.push_back(restart_record(start_record(0, "A100-80", 312, 0, "bf16"),
                                           random_split(&rng, 36000, 1800), 300000000,
                                           "crashed (found by restart 1)"));
  ledger.restarts.push_back(restart_record(start_record(1, "A100-80", 312, 0, "bf16"),
                                           random_split(&rng, 72000, 0), 600000000,
                                           "completed"));
  return ledger;
}

TEST(CostReportRow, FiguresFromALedgerMatchTheHandCalculation) {
  const LedgerContents ledger = a100_ledger();
  const CostRow row = row_from_ledger(ledger, "/runs/ctx");
  // 36000 + 72000 device-seconds = 30 device-hours; tokens 9e8.
  EXPECT_EQ(row.name, "ctx-run");
  EXPECT_EQ(row.source, "/runs/ctx");
  EXPECT_EQ(row.gpu, "A100-80");
  EXPECT_EQ(row.world, 8);
  EXPECT_FALSE(row.planned);
  EXPECT_NEAR(row.device_hours, 30.0, 1e-12);
  EXPECT_DOUBLE_EQ(row.tokens, 9e8);
  EXPECT_NEAR(row.tokens_per_device_hour, 3e7, 1e-6);
  EXPECT_NEAR(row.device_hours_per_trillion_tokens, 1e12 / 3e7, 1e-8);
  // MFU = 9e8 tokens x 6e9 FLOP / (108000 s x 312e12 FLOP/s) = 5.4e18 / 3.3696e19.
  EXPECT_NEAR(row.mfu_bf16, 5.4e18 / 3.3696e19, 1e-15);
  EXPECT_NEAR(row.mfu_bf16, 0.16025641, 1e-8);
  EXPECT_EQ(row.mfu_fp8, 0.0);  // compute is bf16
  EXPECT_NEAR(row.usd, 45.0, 1e-12);  // 30 h x $1.5
  // A100's dense BF16 peak over H800's: 312 / 989.5 (both datasheets).
  EXPECT_NEAR(row.h800_factor, 312.0 / 989.5, 1e-15);
  EXPECT_NEAR(row.h800_equivalent_hours, 30.0 * 312.0 / 989.5, 1e-12);
  // 1e12 budget tokens at 3e7 tokens per device-hour.
  EXPECT_NEAR(row.projected_device_hours, 1e12 / 3e7, 1e-6);
  EXPECT_NEAR(row.projected_usd, 1.5e12 / 3e7, 1e-6);

  // By segment and by restart: the split carried through, lost work where it was.
  ASSERT_EQ(row.restarts.size(), 2u);
  for (size_t s = 0; s < kSegmentCount; ++s) {
    const double expected =
        (ledger.restarts[0].segments[s] + ledger.restarts[1].segments[s]) / 3600.0;
    EXPECT_NEAR(row.segment_hours[s], expected, 1e-12) << segment_key(static_cast<Segment>(s));
  }
  EXPECT_NEAR(row.segment_hours[kLost], 0.5, 1e-12);
  EXPECT_NEAR(row.restarts[0].segment_hours[kLost], 0.5, 1e-12);
  EXPECT_EQ(row.restarts[1].segment_hours[kLost], 0.0);
  EXPECT_NEAR(row.restarts[0].device_hours, 10.0, 1e-12);
  EXPECT_NEAR(row.restarts[1].device_hours, 20.0, 1e-12);
  EXPECT_NEAR(row.restarts[1].wall_hours, 2.5, 1e-12);  // 20 device-hours on 8 devices
  EXPECT_EQ(row.restarts[0].outcome, "crashed (found by restart 1)");
  EXPECT_EQ(row.restarts[0].useful_tokens, 300000000);
}

TEST(CostReportRow, Fp8RunReportsMfuAgainstBothPeaks) {
  std::mt19937 rng(99);
  LedgerContents ledger;
  ledger.restarts.push_back(restart_record(start_record(0, "H800", 989.5, 1979, "fp8"),
                                           random_split(&rng, 7200, 0), 400000000, "completed"));
  const CostRow row = row_from_ledger(ledger, "run");
  // 4e8 x 6e9 = 2.4e18 FLOP over 7200 s x 989.5e12 (BF16) and x 1979e12 (FP8).
  EXPECT_NEAR(row.mfu_bf16, 2.4e18 / (7200 * 989.5e12), 1e-15);
  EXPECT_NEAR(row.mfu_fp8, 2.4e18 / (7200 * 1979e12), 1e-15);
  EXPECT_NEAR(row.h800_factor, 1.0, 1e-15);
  EXPECT_NEAR(row.h800_equivalent_hours, 2.0, 1e-12);
}

TEST(CostReportRow, RestartsOnDifferentDevicesAreEachCostedAtTheirOwnPeakAndPrice) {
  std::mt19937 rng(5);
  LedgerContents ledger;
  LedgerStart on_a100 = start_record(0, "A100-80", 312, 0, "bf16");
  LedgerStart on_h800 = start_record(1, "H800", 989.5, 1979, "bf16");
  on_h800.usd_per_gpu_hour = 2.0;
  ledger.restarts.push_back(restart_record(on_a100, random_split(&rng, 3600, 0), 1000000, "stopped"));
  ledger.restarts.push_back(restart_record(on_h800, random_split(&rng, 7200, 0), 3000000, "completed"));
  const CostRow row = row_from_ledger(ledger, "run");
  EXPECT_NEAR(row.usd, 1 * 1.5 + 2 * 2.0, 1e-12);
  EXPECT_NEAR(row.h800_equivalent_hours, 312.0 / 989.5 + 2.0, 1e-12);
  EXPECT_NEAR(row.mfu_bf16, 4e6 * 6e9 / (3600 * 312e12 + 7200 * 989.5e12), 1e-18);
  EXPECT_EQ(row.gpu, "H800");  // the newest restart's
}

TEST(CostReportRow, LedgerWithoutStartRecordIsAUserError) {
  LedgerContents empty;
  empty.path = "/runs/x/ledger.jsonl";
  try {
    row_from_ledger(empty, "/runs/x");
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_EQ(e.where(), "/runs/x/ledger.jsonl");
    EXPECT_NE(e.hint().find("baleine train"), std::string::npos);
  }
}

// One V3 phase as a measured run on 2048 H800s at $2 per GPU-hour (V3's Table 1 figures).
CostRow v3_phase(const std::string& phase, double gpu_hours, double tokens) {
  std::mt19937 rng(static_cast<unsigned>(gpu_hours));
  LedgerStart s = start_record(0, "H800", 989.5, 1979, "fp8");
  s.world = 2048;
  s.phase = phase;
  s.run_name = "v3-" + phase;
  s.usd_per_gpu_hour = 2.0;
  s.token_budget = tokens;
  LedgerContents ledger;
  ledger.restarts.push_back(restart_record(s, random_split(&rng, gpu_hours * 3600, 0),
                                           static_cast<int64_t>(tokens), "completed"));
  return row_from_ledger(ledger, "runs/" + phase);
}

CostReport v3_report() {
  return make_report({v3_phase("pretraining", 2664e3, 14.8e12),
                      v3_phase("context_extension", 119e3, 0.1e12),
                      v3_phase("post_training", 5e3, 0.01e12)});
}

TEST(CostReportMerge, DeepSeekV3PhasesAddUpToItsTableOne) {
  const CostReport report = v3_report();
  ASSERT_EQ(report.rows.size(), 3u);
  EXPECT_NEAR(report.total.device_hours, 2788e3, 1e-6);
  EXPECT_NEAR(report.total.h800_equivalent_hours, 2788e3, 1e-6);
  EXPECT_NEAR(report.total.usd, 5.576e6, 1e-5);
  EXPECT_NEAR(report.total.tokens, 14.91e12, 1e3);
  EXPECT_EQ(report.total.gpu, "H800");
  EXPECT_EQ(report.total.phase, "all");
  // V3's own rate: 2664K hours over 14.8T tokens is 180K per trillion (its §1).
  EXPECT_NEAR(report.rows[0].device_hours_per_trillion_tokens, 180e3, 1e-6);
  EXPECT_FALSE(report.normalisation.empty());

  const std::string md = report_markdown(report);
  EXPECT_NE(md.find("| Training Costs | Pre-Training | Context Extension | Post-Training | Total |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| in H800 GPU Hours | 2664K | 119K | 5K | 2788K |"), std::string::npos) << md;
  EXPECT_NE(md.find("| in USD | $5.328M | $238K | $10K | $5.576M |"), std::string::npos) << md;
  // The CLI's printed summary carries the same table.
  EXPECT_NE(report_markdown_summary(report).find("2788K"), std::string::npos);
}

TEST(CostReportMerge, TotalRecomputesRatesFromTheSums) {
  std::mt19937 rng(77);
  LedgerContents cpu;
  LedgerStart s = start_record(0, "cpu", 0.1, 0, "fp32");
  s.device_kind = "cpu";
  s.world = 4;
  s.usd_per_gpu_hour = 0.05;
  cpu.restarts.push_back(restart_record(s, random_split(&rng, 3600 * 4, 0), 2000000, "completed"));
  const CostRow a = row_from_ledger(a100_ledger(), "a");
  const CostRow b = row_from_ledger(cpu, "b");
  const CostReport report = make_report({a, b});
  const CostRow& t = report.total;
  EXPECT_NEAR(t.device_hours, 34.0, 1e-12);
  EXPECT_NEAR(t.tokens, 9.02e8, 1e-3);
  EXPECT_NEAR(t.tokens_per_device_hour, 9.02e8 / 34.0, 1e-6);
  EXPECT_NEAR(t.usd, 45.0 + 4 * 0.05, 1e-12);
  EXPECT_EQ(t.gpu, "mixed");
  // MFU over both: all useful FLOPs over all peak capacity.
  const double flops = 9e8 * 6e9 + 2e6 * 6e9;
  const double capacity = 108000 * 312e12 + 14400 * 0.1e12;
  EXPECT_NEAR(t.mfu_bf16, flops / capacity, 1e-12);
  EXPECT_NEAR(t.h800_equivalent_hours, 30 * 312 / 989.5 + 4 * 0.1 / 989.5, 1e-12);
}

TEST(CostReportReferences, PublishedRunsOnTheH800Footing) {
  const auto refs = reference_comparisons(2.0);
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].name, "DeepSeek-V3");
  EXPECT_NEAR(refs[0].h800_hours_per_trillion_tokens, 180e3, 1e-6);  // 2664K / 14.8T
  EXPECT_NEAR(refs[0].usd, 5.576e6, 1e-5);
  EXPECT_FALSE(refs[0].priced_at_fallback);
  EXPECT_EQ(refs[1].name, "Llama 3.1 405B");
  // H100 SXM and H800 share the 989.5 TFLOP/s dense BF16 peak: hours count one for one.
  EXPECT_NEAR(refs[1].h800_factor, 1.0, 1e-12);
  EXPECT_NEAR(refs[1].h800_hours_per_trillion_tokens, 30.84e6 / 15.6, 1e-6);
  EXPECT_TRUE(refs[1].priced_at_fallback);
  EXPECT_NEAR(refs[1].usd, 30.84e6 * 2.0, 1e-3);
}

// ---- Markdown well-formedness ------------------------------------------------------------

// Cells of one table line: split on '|' not escaped by a backslash.
size_t count_cells(const std::string& line) {
  size_t bars = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '|' && (i == 0 || line[i - 1] != '\\')) ++bars;
  }
  return bars - 1;
}

// Every table: a header, a separator of as many columns, rows of as many cells. Returns the
// number of tables checked.
int check_tables(const std::string& md) {
  std::istringstream in(md);
  std::vector<std::vector<std::string>> tables(1);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] == '|') {
      tables.back().push_back(line);
    } else if (!tables.back().empty()) {
      tables.emplace_back();
    }
  }
  int checked = 0;
  for (const auto& table : tables) {
    if (table.empty()) continue;
    ++checked;
    EXPECT_GE(table.size(), 3u) << table[0];
    const size_t columns = count_cells(table[0]);
    EXPECT_GE(columns, 2u);
    EXPECT_EQ(table.size() > 1 ? table[1].find_first_not_of("|-") : 0, std::string::npos)
        << "separator under " << table[0];
    for (const std::string& line : table) {
      EXPECT_EQ(line.back(), '|') << line;
      EXPECT_EQ(count_cells(line), columns) << "header: " << table[0] << "\nrow: " << line;
    }
  }
  return checked;
}

TEST(CostReportMarkdown, EveryTableRowHasTheHeadersColumnCount) {
  CostReport merged = v3_report();
  merged.rows[1].name = "odd | name";  // a '|' in a name must not add a column
  merged.rows[2].planned = true;
  merged = make_report(merged.rows);
  merged.problems.push_back({7, "not a JSON object"});
  merged.problem_files.push_back("/runs/a/ledger.jsonl");
  const std::string md = report_markdown(merged);
  // summary, Table 1, segments, restarts, projection, comparison
  EXPECT_EQ(check_tables(md), 6) << md;
  EXPECT_NE(md.find("odd \\| name"), std::string::npos);
  EXPECT_NE(md.find("(planned)"), std::string::npos);
  EXPECT_NE(md.find("`/runs/a/ledger.jsonl:7`: not a JSON object"), std::string::npos);
  EXPECT_NE(md.find("**Normalisation.**"), std::string::npos);
  EXPECT_NE(md.find("DeepSeek-V3 (published)"), std::string::npos);
  EXPECT_NE(md.find("Llama 3.1 405B (published)"), std::string::npos);

  const CostReport single = make_report({row_from_ledger(a100_ledger(), "/runs/ctx")});
  const std::string one = report_markdown(single);
  // One row: no total line and no Table 1; the other five tables.
  EXPECT_EQ(check_tables(one), 5) << one;
  EXPECT_EQ(one.find("Training Costs"), std::string::npos);
  EXPECT_NE(one.find("| ctx-run | Pre-Training | 8 × A100-80 | 30 | 9.459 | 900M | 30M | 33.33K | "
                     "16.0% of BF16 peak | $45 |"),
            std::string::npos)
      << one;
  EXPECT_NE(one.find("| lost work | 0.5 |"), std::string::npos) << one;
  EXPECT_NE(one.find("crashed (found by restart 1)"), std::string::npos);
}

// ---- JSON round trip -------------------------------------------------------------------------

void expect_same_row(const CostRow& a, const CostRow& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.planned, b.planned);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.gpu, b.gpu);
  EXPECT_EQ(a.device_kind, b.device_kind);
  EXPECT_EQ(a.world, b.world);
  EXPECT_EQ(a.compute, b.compute);
  // %.17g writes every double so that it reads back to the same value: exact equality.
  const double* numbers_a[] = {&a.peak_bf16_tflops, &a.peak_fp8_tflops, &a.usd_per_gpu_hour,
                               &a.flops_per_token, &a.active_params, &a.device_hours,
                               &a.tokens, &a.tokens_per_device_hour,
                               &a.device_hours_per_trillion_tokens, &a.mfu_bf16, &a.mfu_fp8,
                               &a.usd, &a.h800_factor, &a.h800_equivalent_hours,
                               &a.token_budget, &a.projected_device_hours, &a.projected_usd};
  const double* numbers_b[] = {&b.peak_bf16_tflops, &b.peak_fp8_tflops, &b.usd_per_gpu_hour,
                               &b.flops_per_token, &b.active_params, &b.device_hours,
                               &b.tokens, &b.tokens_per_device_hour,
                               &b.device_hours_per_trillion_tokens, &b.mfu_bf16, &b.mfu_fp8,
                               &b.usd, &b.h800_factor, &b.h800_equivalent_hours,
                               &b.token_budget, &b.projected_device_hours, &b.projected_usd};
  for (size_t i = 0; i < sizeof(numbers_a) / sizeof(numbers_a[0]); ++i) {
    EXPECT_EQ(*numbers_a[i], *numbers_b[i]) << a.name << " field #" << i;
  }
  EXPECT_EQ(a.segment_hours, b.segment_hours);
  ASSERT_EQ(a.restarts.size(), b.restarts.size());
  for (size_t i = 0; i < a.restarts.size(); ++i) {
    const RestartCost &x = a.restarts[i], &y = b.restarts[i];
    EXPECT_EQ(x.restart, y.restart);
    EXPECT_EQ(x.outcome, y.outcome);
    EXPECT_EQ(x.device_hours, y.device_hours);
    EXPECT_EQ(x.wall_hours, y.wall_hours);
    EXPECT_EQ(x.world, y.world);
    EXPECT_EQ(x.useful_tokens, y.useful_tokens);
    EXPECT_EQ(x.last_step, y.last_step);
    EXPECT_EQ(x.segment_hours, y.segment_hours);
  }
}

TEST(CostReportJson, RoundTripsEveryField) {
  CostRow measured = row_from_ledger(a100_ledger(), "/runs/ctx");
  measured.name = "quote \" backslash \\ tab\t newline\n × <&>";
  CostRow planned = v3_phase("post_training", 5e3, 0.01e12);
  planned.planned = true;
  planned.restarts.clear();
  planned.source = "configs/deepseek-v3-671b.yaml";
  CostReport report = make_report({measured, planned});
  report.problems.push_back({3, "truncated: \"{\\\"type\" ..."});
  report.problem_files.push_back("/runs/ctx/ledger.jsonl");

  const std::string path = testing::scratch_dir() + "/cost-report.json";
  std::ofstream(path) << report_json(report);
  const CostReport back = read_report_json(path);
  ASSERT_EQ(back.rows.size(), 2u);
  expect_same_row(report.rows[0], back.rows[0]);
  expect_same_row(report.rows[1], back.rows[1]);
  expect_same_row(report.total, back.total);
  EXPECT_TRUE(back.rows[1].planned);
  EXPECT_EQ(back.normalisation, report.normalisation);
  ASSERT_EQ(back.problems.size(), 1u);
  EXPECT_EQ(back.problems[0].line, 3);
  EXPECT_EQ(back.problems[0].message, report.problems[0].message);
  EXPECT_EQ(back.problem_files, report.problem_files);
}

TEST(CostReportJson, NotACostReportIsAUserErrorNamingTheFile) {
  const std::string dir = testing::scratch_dir();
  const std::string broken = dir + "/broken.json", other = dir + "/other.json";
  std::ofstream(broken) << "{\"format\": \"baleine cost report\", \"rows\": [";
  std::ofstream(other) << "{\"step\": 3}";
  for (const std::string& path : {broken, other}) {
    try {
      read_report_json(path);
      FAIL() << "expected a UserError for " << path;
    } catch (const UserError& e) {
      EXPECT_EQ(e.where(), path);
      EXPECT_FALSE(e.hint().empty());
    }
  }
  EXPECT_THROW(read_report_json(dir + "/missing.json"), UserError);
}

// ---- SVG -------------------------------------------------------------------------------------

// A small XML well-formedness check: tags balance and nest, attribute values are quoted, and
// '&' only starts an entity; '<' never appears in text or attribute values.
::testing::AssertionResult well_formed_xml(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0;
  auto fail = [&](const std::string& what) {
    return ::testing::AssertionFailure() << what << " at offset " << i << ": "
                                         << xml.substr(i, 60);
  };
  while (i < xml.size()) {
    const char c = xml[i];
    if (c == '&') {
      const size_t semi = xml.find(';', i);
      if (semi == std::string::npos || semi - i > 8) return fail("bare '&'");
      const std::string entity = xml.substr(i, semi - i + 1);
      if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" &&
          entity != "&apos;" && entity.rfind("&#", 0) != 0) {
        return fail("unknown entity " + entity);
      }
      i = semi + 1;
    } else if (c == '>') {
      return fail("'>' outside a tag");
    } else if (c != '<') {
      ++i;
    } else if (xml.compare(i, 2, "<?") == 0) {
      const size_t end = xml.find("?>", i);
      if (end == std::string::npos) return fail("unterminated <?");
      i = end + 2;
    } else if (xml.compare(i, 4, "<!--") == 0) {
      const size_t end = xml.find("-->", i);
      if (end == std::string::npos) return fail("unterminated comment");
      i = end + 3;
    } else {
      // A tag: scan to its '>' outside quoted attribute values.
      size_t j = i + 1;
      char quote = 0;
      for (; j < xml.size(); ++j) {
        if (quote) {
          if (xml[j] == quote) quote = 0;
          else if (xml[j] == '<') return fail("'<' in an attribute value");
        } else if (xml[j] == '"' || xml[j] == '\'') {
          quote = xml[j];
        } else if (xml[j] == '<') {
          return fail("'<' inside a tag");
        } else if (xml[j] == '>') {
          break;
        }
      }
      if (j >= xml.size()) return fail("unterminated tag");
      const std::string tag = xml.substr(i + 1, j - i - 1);
      const bool closing = tag[0] == '/';
      const bool self_closing = tag.back() == '/';
      const std::string name = tag.substr(closing ? 1 : 0, tag.find_first_of(" /\t\n", 1) -
                                                               (closing ? 1 : 0));
      if (name.empty()) return fail("tag without a name");
      if (closing) {
        if (open.empty() || open.back() != name) {
          return fail("</" + name + "> closes " + (open.empty() ? "nothing" : "<" + open.back() + ">"));
        }
        open.pop_back();
      } else if (!self_closing) {
        open.push_back(name);
      }
      i = j + 1;
    }
  }
  if (!open.empty()) return ::testing::AssertionFailure() << "<" << open.back() << "> never closed";
  return ::testing::AssertionSuccess();
}

TEST(CostReportSvg, CheckerCatchesBrokenDocuments) {
  EXPECT_TRUE(well_formed_xml("<a x=\"1\"><b/>t &amp; u</a>"));
  EXPECT_FALSE(well_formed_xml("<a><b></a>"));
  EXPECT_FALSE(well_formed_xml("<a>t & u</a>"));
  EXPECT_FALSE(well_formed_xml("<a>1 > 0</a>"));
  EXPECT_FALSE(well_formed_xml("<a>"));
}

TEST(CostReportSvg, SelfContainedWellFormedAndLabelled) {
  CostReport report = v3_report();
  report.rows[0].name = "pre <&> 'training'";
  report.rows[2].planned = true;
  report = make_report(report.rows);
  const std::string svg = report_svg(report);
  EXPECT_TRUE(well_formed_xml(svg));
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  for (const char* needed : {"<svg xmlns=\"http://www.w3.org/2000/svg\"", "width=\"", "height=\"",
                             "viewBox=\"0 0 ", "DeepSeek-V3 (published)",
                             "Llama 3.1 405B (published)", "pre &lt;&amp;&gt; &apos;training&apos;",
                             "log scale", "lost work", "exposed communication", "2664K GPU-hours",
                             "180K", "(planned)", "restart 0"}) {
    EXPECT_NE(svg.find(needed), std::string::npos) << needed;
  }
  // Self-contained: nothing a browser would fetch or run.
  for (const char* banned : {"<script", "href", "@import", "url(", "<image", "<foreignObject"}) {
    EXPECT_EQ(svg.find(banned), std::string::npos) << banned;
  }
  // A CPU run five orders of magnitude away from V3 still gets its own bar.
  std::mt19937 rng(3);
  LedgerContents cpu;
  LedgerStart s = start_record(0, "cpu", 0.1, 0, "fp32");
  s.device_kind = "cpu";
  cpu.restarts.push_back(restart_record(s, random_split(&rng, 120, 30), 20000, "completed"));
  const std::string small = report_svg(make_report({row_from_ledger(cpu, "tiny")}));
  EXPECT_TRUE(well_formed_xml(small));
  EXPECT_NE(small.find("ctx-run"), std::string::npos);
}

TEST(CostReportFiles, WritesTheThreeFilesAndNoTemporaries) {
  const std::string dir = testing::scratch_dir() + "/out/nested";
  const CostReport report = make_report({row_from_ledger(a100_ledger(), "/runs/ctx")});
  const std::vector<std::string> paths = write_report_files(report, dir);
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(paths[0], dir + "/cost-report.md");
  EXPECT_EQ(paths[1], dir + "/cost-report.json");
  EXPECT_EQ(paths[2], dir + "/cost-report.svg");
  for (const std::string& p : paths) EXPECT_GT(std::filesystem::file_size(p), 100u) << p;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    EXPECT_NE(entry.path().extension(), ".tmp") << "leftover " << entry.path();
  }
  // The JSON written is the one read back.
  EXPECT_EQ(read_report_json(paths[1]).rows.size(), 1u);
}

}  // namespace
}  // namespace baleine::cost
