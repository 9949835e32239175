#include "trainer/cost/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "trainer/config/gpu_table.h"
#include "trainer/cost/reference_runs.h"
#include "trainer/errors.h"

namespace baleine::cost {

namespace fs = std::filesystem;

namespace {

constexpr double kSecondsPerHour = 3600.0;

// The device table must know every device a reference run or the H800 unit names: a missing
// row is a bug in the table, not bad input.
double table_peak_bf16(const std::string& name) {
  const config::DeviceSpec* device = config::find_device(name);
  if (!device || !(device->bf16_tflops > 0)) {
    throw std::logic_error("the device table (trainer/config/gpu_table.cpp) has no BF16 peak for " +
                           name);
  }
  return device->bf16_tflops;
}

double ratio(double numerator, double denominator) {
  return denominator > 0 ? numerator / denominator : 0.0;
}

// The value all rows share, or `mixed`.
template <typename Get>
std::string common_text(const std::vector<CostRow>& rows, Get get, const std::string& mixed) {
  if (rows.empty()) return "";
  const std::string first = get(rows.front());
  for (const CostRow& r : rows) {
    if (get(r) != first) return mixed;
  }
  return first;
}

template <typename Get>
double common_number(const std::vector<CostRow>& rows, Get get) {
  if (rows.empty()) return 0;
  const double first = get(rows.front());
  for (const CostRow& r : rows) {
    if (get(r) != first) return 0;
  }
  return first;
}

std::string normalisation_text(double h800_peak) {
  char buf[640];
  std::snprintf(buf, sizeof(buf),
                "H800-equivalent hours = device-hours x (the device's dense BF16 peak TFLOP/s / "
                "H800's, %g TFLOP/s). An hour on a device counts as the share of an H800-hour "
                "its peak BF16 throughput could do: this compares hardware capacity, not "
                "achieved speed (MFU says how much of its peak a run used). A CPU rank is one "
                "device of kind cpu at the device table's CPU peak.",
                h800_peak);
  return buf;
}

// Writes `text` to `path` through a temporary file renamed over it: readers of the report
// (a browser, another `baleine report`) see the old file or the new one, never half of one.
void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      throw UserError(path, "", "cannot write the report file",
                      "check that the directory is writable and the disk is not full, or pass "
                      "--output DIR");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw UserError(path, "", "cannot rename " + tmp + " over it: " + ec.message());
}

}  // namespace

double h800_peak_bf16_tflops() { return table_peak_bf16("H800"); }

CostRow row_from_ledger(const LedgerContents& ledger, const std::string& source) {
  if (ledger.restarts.empty()) {
    throw UserError(ledger.path, "", "the ledger has no start record, so there is nothing to cost",
                    "`baleine train` writes a start record into RUN_DIR/ledger.jsonl when it "
                    "begins; pass the run directory of a training run");
  }
  const double h800_peak = h800_peak_bf16_tflops();
  const LedgerStart& newest = ledger.restarts.back().start;
  CostRow row;
  row.name = newest.run_name.empty() ? fs::path(source).filename().string() : newest.run_name;
  row.phase = newest.phase;
  row.source = source;
  row.gpu = newest.gpu;
  row.device_kind = newest.device_kind;
  row.world = newest.world;
  row.peak_bf16_tflops = newest.peak_bf16_tflops;
  row.peak_fp8_tflops = newest.peak_fp8_tflops;
  row.compute = newest.compute;
  row.usd_per_gpu_hour = newest.usd_per_gpu_hour;
  row.flops_per_token = newest.flops_per_token;
  row.active_params = newest.active_params;
  row.token_budget = newest.token_budget;

  // Each restart is costed with its own start record: MFU = useful FLOPs / (device-seconds x
  // peak) summed over restarts, so a run resumed on another device kind stays honest.
  double useful_flops = 0, bf16_capacity = 0, fp8_capacity = 0;
  bool fp8_everywhere = row.compute == "fp8";
  for (const RestartRecord& r : ledger.restarts) {
    RestartCost rc;
    rc.restart = r.start.restart;
    rc.outcome = r.outcome;
    rc.world = r.start.world;
    rc.useful_tokens = r.useful_tokens;
    rc.last_step = r.last_step;
    rc.wall_hours = r.wall_s / kSecondsPerHour;
    for (size_t s = 0; s < kSegmentCount; ++s) {
      rc.segment_hours[s] = r.segments[s] / kSecondsPerHour;
      row.segment_hours[s] += rc.segment_hours[s];
    }
    rc.device_hours = total_seconds(rc.segment_hours);
    const double device_s = total_seconds(r.segments);

    row.device_hours += rc.device_hours;
    row.tokens += static_cast<double>(r.useful_tokens);
    row.usd += rc.device_hours * r.start.usd_per_gpu_hour;
    row.h800_equivalent_hours += rc.device_hours * r.start.peak_bf16_tflops / h800_peak;
    useful_flops += static_cast<double>(r.useful_tokens) * r.start.flops_per_token;
    bf16_capacity += device_s * r.start.peak_bf16_tflops * 1e12;
    fp8_capacity += device_s * r.start.peak_fp8_tflops * 1e12;
    if (!(r.start.peak_fp8_tflops > 0)) fp8_everywhere = false;
    row.restarts.push_back(rc);
  }
  row.tokens_per_device_hour = ratio(row.tokens, row.device_hours);
  row.device_hours_per_trillion_tokens = ratio(row.device_hours * 1e12, row.tokens);
  row.mfu_bf16 = ratio(useful_flops, bf16_capacity);
  row.mfu_fp8 = fp8_everywhere ? ratio(useful_flops, fp8_capacity) : 0.0;
  row.h800_factor = row.peak_bf16_tflops / h800_peak;
  // The budget at this run's own rate (tokens per device-hour over all its device-hours, lost
  // work and startup included: what the rest of the phase would cost at the same efficiency).
  row.projected_device_hours = ratio(row.token_budget, row.tokens_per_device_hour);
  row.projected_usd = row.projected_device_hours * row.usd_per_gpu_hour;
  return row;
}

CostReport make_report(std::vector<CostRow> rows) {
  CostReport report;
  report.rows = std::move(rows);
  const double h800_peak = h800_peak_bf16_tflops();
  report.normalisation = normalisation_text(h800_peak);

  CostRow& t = report.total;
  const auto& rs = report.rows;
  t.name = "Total";
  t.phase = common_text(rs, [](const CostRow& r) { return r.phase; }, "all");
  t.gpu = common_text(rs, [](const CostRow& r) { return r.gpu; }, "mixed");
  t.device_kind = common_text(rs, [](const CostRow& r) { return r.device_kind; }, "mixed");
  t.compute = common_text(rs, [](const CostRow& r) { return r.compute; }, "mixed");
  t.peak_bf16_tflops = common_number(rs, [](const CostRow& r) { return r.peak_bf16_tflops; });
  t.peak_fp8_tflops = common_number(rs, [](const CostRow& r) { return r.peak_fp8_tflops; });
  t.active_params = common_number(rs, [](const CostRow& r) { return r.active_params; });

  // Useful FLOPs and peak capacity per row, recovered from its MFU: capacity is its
  // H800-equivalent device-seconds x H800's peak (= sum of device-seconds x own peak).
  double useful_flops = 0, capacity = 0, fp8_capacity = 0;
  bool all_fp8 = !rs.empty();
  for (const CostRow& r : rs) {
    t.planned = t.planned || r.planned;
    t.world = std::max(t.world, r.world);
    t.device_hours += r.device_hours;
    for (size_t s = 0; s < kSegmentCount; ++s) t.segment_hours[s] += r.segment_hours[s];
    t.tokens += r.tokens;
    t.usd += r.usd;
    t.h800_equivalent_hours += r.h800_equivalent_hours;
    t.token_budget += r.token_budget;
    t.projected_device_hours += r.projected_device_hours;
    t.projected_usd += r.projected_usd;
    const double row_capacity = r.h800_equivalent_hours * kSecondsPerHour * h800_peak * 1e12;
    const double row_flops = r.mfu_bf16 * row_capacity;
    useful_flops += row_flops;
    capacity += row_capacity;
    if (r.mfu_fp8 > 0) {
      fp8_capacity += row_flops / r.mfu_fp8;
    } else {
      all_fp8 = false;
    }
  }
  t.flops_per_token = ratio(useful_flops, t.tokens);
  t.usd_per_gpu_hour = t.device_hours > 0
                           ? t.usd / t.device_hours
                           : common_number(rs, [](const CostRow& r) { return r.usd_per_gpu_hour; });
  t.tokens_per_device_hour = ratio(t.tokens, t.device_hours);
  t.device_hours_per_trillion_tokens = ratio(t.device_hours * 1e12, t.tokens);
  t.mfu_bf16 = ratio(useful_flops, capacity);
  t.mfu_fp8 = all_fp8 ? ratio(useful_flops, fp8_capacity) : 0.0;
  t.h800_factor = t.device_hours > 0 ? t.h800_equivalent_hours / t.device_hours
                                     : ratio(t.peak_bf16_tflops, h800_peak);
  return report;
}

std::vector<std::string> write_report_files(const CostReport& report, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw UserError(dir, "", "cannot create the report directory" +
                                 (ec ? ": " + ec.message() : std::string()),
                    "pass --output DIR with a writable directory");
  }
  const std::string base = (fs::path(dir) / "cost-report").string();
  const std::vector<std::pair<std::string, std::string>> files = {
      {base + ".md", report_markdown(report)},
      {base + ".json", report_json(report)},
      {base + ".svg", report_svg(report)},
  };
  std::vector<std::string> paths;
  for (const auto& [path, text] : files) {
    write_atomically(path, text);
    paths.push_back(path);
  }
  return paths;
}

std::vector<ReferenceComparison> reference_comparisons(double fallback_usd_per_gpu_hour) {
  const double h800_peak = h800_peak_bf16_tflops();
  std::vector<ReferenceComparison> out;
  for (const ReferenceRun& run : reference_runs()) {
    ReferenceComparison c;
    c.name = run.name;
    c.gpu = run.gpu;
    c.gpu_hours = run.gpu_hours;
    c.h800_factor = table_peak_bf16(run.gpu) / h800_peak;
    c.h800_equivalent_hours = run.gpu_hours * c.h800_factor;
    c.tokens = run.tokens;
    double basis_hours = run.gpu_hours;
    c.per_trillion_basis = "all its GPU-hours (no per-phase split published)";
    for (const ReferencePhase& p : run.phases) {
      if (p.phase == "pretraining") {
        basis_hours = p.gpu_hours;
        c.per_trillion_basis = "its pre-training GPU-hours";
      }
    }
    c.h800_hours_per_trillion_tokens = ratio(basis_hours * c.h800_factor * 1e12, run.tokens);
    c.priced_at_fallback = !(run.usd_per_gpu_hour > 0);
    c.usd_per_gpu_hour = c.priced_at_fallback ? fallback_usd_per_gpu_hour : run.usd_per_gpu_hour;
    c.usd = run.gpu_hours * c.usd_per_gpu_hour;
    c.source = run.source;
    out.push_back(c);
  }
  return out;
}

double unsplit_hours(const CostRow& row) {
  const double rest = row.device_hours - total_seconds(row.segment_hours);
  // Summing eight doubles rounds: a remainder below 1e-9 of the total is that, not hours.
  return rest > 1e-9 * row.device_hours ? rest : 0.0;
}

double h800_hours_per_trillion_tokens(const CostRow& row) {
  return ratio(row.h800_equivalent_hours * 1e12, row.tokens);
}

std::string format_percent(double fraction) {
  char buf[64];
  const double percent = fraction * 100;
  // Three significant digits, but no exponent: 35.2%, 2.05%, 0.0123%.
  if (percent == 0) return "0%";
  if (std::fabs(percent) >= 10) {
    std::snprintf(buf, sizeof(buf), "%.1f%%", percent);
  } else {
    const int decimals = std::min(12, 2 - static_cast<int>(std::floor(std::log10(std::fabs(percent)))));
    std::snprintf(buf, sizeof(buf), "%.*f%%", decimals, percent);
  }
  return buf;
}

std::string phase_title(const std::string& phase) {
  if (phase == "pretraining") return "Pre-Training";
  if (phase == "context_extension") return "Context Extension";
  if (phase == "post_training") return "Post-Training";
  return phase;
}

}  // namespace baleine::cost
