// cost-report.md: the summary, DeepSeek-V3's Table 1 shape when phases are merged, device-hours
// by segment and by restart, the projection to the token budget, the comparison with the
// published runs (and the rule that puts them on one footing), and the ledger's problems.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/cost/report.h"
#include "trainer/cost/units.h"

namespace baleine::cost {

namespace {

// A Markdown table whose every row has the header's column count (a row with fewer cells is
// drawn shifted by most renderers, so a mismatch is a bug here, caught at once).
class Table {
 public:
  explicit Table(std::vector<std::string> header) : columns_(header.size()) {
    add_line(header);
    std::string rule = "|";
    for (size_t i = 0; i < columns_; ++i) rule += "---|";
    text_ += rule + "\n";
  }
  void row(const std::vector<std::string>& cells) {
    if (cells.size() != columns_) {
      throw std::logic_error("cost report table: a row of " + std::to_string(cells.size()) +
                             " cells under a header of " + std::to_string(columns_));
    }
    add_line(cells);
  }
  const std::string& str() const { return text_; }

 private:
  void add_line(const std::vector<std::string>& cells) {
    text_ += "|";
    for (const std::string& c : cells) text_ += " " + cell(c) + " |";
    text_ += "\n";
  }
  // A cell is one line, and a '|' in a run name must not open a new column.
  static std::string cell(const std::string& s) {
    std::string out;
    for (const char c : s) {
      if (c == '|') {
        out += "\\|";
      } else if (c == '\n' || c == '\r') {
        out += ' ';
      } else {
        out += c;
      }
    }
    return out;
  }
  size_t columns_;
  std::string text_;
};

std::string row_label(const CostRow& r) { return r.name + (r.planned ? " (planned)" : ""); }

// Outside the summary (which has a Phase column) the phases of one run would share a name.
std::string qualified_label(const CostReport& report, const CostRow& r) {
  if (report.rows.size() < 2) return row_label(r);
  return r.name + ", " + phase_title(r.phase) + (r.planned ? " (planned)" : "");
}

std::string total_label(const CostReport& report) {
  bool all_planned = !report.rows.empty();
  for (const CostRow& r : report.rows) all_planned = all_planned && r.planned;
  if (all_planned) return "Total (planned)";
  return report.total.planned ? "Total (includes planned rows)" : "Total";
}

std::string devices(const CostRow& r) {
  if (r.world <= 0 || r.gpu == "mixed") return r.gpu;
  return std::to_string(r.world) + " × " + r.gpu;
}

std::string mfu(const CostRow& r) {
  std::string s = format_percent(r.mfu_bf16) + " of BF16 peak";
  if (r.mfu_fp8 > 0) s += ", " + format_percent(r.mfu_fp8) + " of FP8 peak";
  return s;
}

std::string number(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

// The rows, then the total when there is more than one row (one row is its own total).
std::vector<std::pair<std::string, const CostRow*>> rows_and_total(const CostReport& report,
                                                                   bool qualified) {
  std::vector<std::pair<std::string, const CostRow*>> out;
  for (const CostRow& r : report.rows) {
    out.emplace_back(qualified ? qualified_label(report, r) : row_label(r), &r);
  }
  if (report.rows.size() > 1) out.emplace_back(total_label(report), &report.total);
  return out;
}

std::string summary_table(const CostReport& report) {
  Table t({"Run", "Phase", "Devices", "GPU-hours", "H800-equiv. hours", "Tokens",
           "Tokens / GPU-hour", "GPU-hours / 1T tokens", "MFU", "$"});
  for (const auto& [label, r] : rows_and_total(report, false)) {
    t.row({label, phase_title(r->phase), devices(*r), format_hours(r->device_hours),
           format_hours(r->h800_equivalent_hours), format_count(r->tokens),
           format_count(r->tokens_per_device_hour),
           format_hours(r->device_hours_per_trillion_tokens), mfu(*r), format_usd(r->usd)});
  }
  return t.str();
}

// DeepSeek-V3's Table 1 (arXiv:2412.19437): one column per phase, then the total; hours are
// H800-equivalent so phases run on other GPUs add up on V3's footing.
std::string table_one(const CostReport& report) {
  std::vector<std::string> phases = {"pretraining", "context_extension", "post_training"};
  for (const CostRow& r : report.rows) {
    bool known = false;
    for (const std::string& p : phases) known = known || p == r.phase;
    if (!known) phases.push_back(r.phase);
  }
  std::vector<std::string> header = {"Training Costs"};
  std::vector<std::string> hours = {"in H800 GPU Hours"}, usd = {"in USD"};
  for (const std::string& phase : phases) {
    double h = 0, d = 0;
    bool any = false;
    for (const CostRow& r : report.rows) {
      if (r.phase != phase) continue;
      any = true;
      h += r.h800_equivalent_hours;
      d += r.usd;
    }
    header.push_back(phase_title(phase));
    hours.push_back(any ? format_hours(h) : "—");
    usd.push_back(any ? format_usd(d) : "—");
  }
  header.push_back("Total");
  hours.push_back(format_hours(report.total.h800_equivalent_hours));
  usd.push_back(format_usd(report.total.usd));
  Table t(header);
  t.row(hours);
  t.row(usd);
  std::string notes =
      "\nShaped like DeepSeek-V3's Table 1. H800 GPU Hours are H800-equivalent hours (see "
      "\"Beside DeepSeek-V3 and Llama 3.1 405B\"); USD is each run's device-hours at its own "
      "price per device-hour.\n";
  std::string planned;
  for (const CostRow& r : report.rows) {
    if (r.planned) planned += (planned.empty() ? "" : ", ") + r.name + " (" + phase_title(r.phase) + ")";
  }
  if (!planned.empty()) notes += "Planned, not measured: " + planned + ".\n";
  return t.str() + notes;
}

std::string segment_section(const CostReport& report) {
  std::vector<std::string> header = {"Segment"};
  for (const CostRow& r : report.rows) header.push_back(qualified_label(report, r) + " (GPU-hours)");
  if (report.rows.size() > 1) header.push_back("Total (GPU-hours)");
  header.push_back("Share");
  Table t(header);
  const double all = report.total.device_hours;
  for (size_t s = 0; s <= kSegmentCount; ++s) {
    const bool total_line = s == kSegmentCount;
    std::vector<std::string> cells = {
        total_line ? "all segments" : segment_label(static_cast<Segment>(s))};
    for (const CostRow& r : report.rows) {
      cells.push_back(format_hours(total_line ? r.device_hours : r.segment_hours[s]));
    }
    const double sum = total_line ? all : report.total.segment_hours[s];
    if (report.rows.size() > 1) cells.push_back(format_hours(sum));
    cells.push_back(all > 0 ? format_percent(sum / all) : "—");
    if (total_line && unsplit_hours(report.total) > 0) {
      // Planned rows predict hours, not where they go: keep the column sums honest.
      std::vector<std::string> unsplit = {"not split by segment (planned)"};
      for (const CostRow& r : report.rows) unsplit.push_back(format_hours(unsplit_hours(r)));
      if (report.rows.size() > 1) unsplit.push_back(format_hours(unsplit_hours(report.total)));
      unsplit.push_back(format_percent(unsplit_hours(report.total) / all));
      t.row(unsplit);
    }
    t.row(cells);
  }
  return "## GPU-hours by segment\n\n" + t.str() +
         "\nEvery second of every rank is in one segment, from its process start to its last "
         "ledger record. Lost work is what a crashed or killed restart did after its last "
         "checkpoint: paid for, then redone.\n";
}

std::string restart_section(const CostReport& report) {
  Table t({"Run", "Restart", "Outcome", "Devices", "Wall hours", "GPU-hours",
           "Lost work (GPU-hours)", "Useful tokens", "Last step"});
  bool any = false;
  for (const CostRow& r : report.rows) {
    for (const RestartCost& rc : r.restarts) {
      any = true;
      t.row({qualified_label(report, r), std::to_string(rc.restart), rc.outcome, std::to_string(rc.world),
             format_hours(rc.wall_hours), format_hours(rc.device_hours),
             format_hours(rc.segment_hours[static_cast<size_t>(Segment::kLostWork)]),
             format_count(static_cast<double>(rc.useful_tokens)),
             std::to_string(rc.last_step)});
    }
  }
  std::string text = "## GPU-hours by restart\n\n";
  if (!any) return text + "No restarts: every row is planned, not measured.\n";
  return text + t.str() +
         "\nEach `baleine train` in a run directory is one restart. Useful tokens exclude "
         "the lost work's.\n";
}

std::string projection_section(const CostReport& report) {
  Table t({"Run", "Token budget", "Tokens trained", "Tokens / GPU-hour", "Projected GPU-hours",
           "Projected H800-equiv. hours", "Days on its devices", "Projected $"});
  for (const auto& [label, r] : rows_and_total(report, true)) {
    const bool one_device_count = r->world > 0 && r->gpu != "mixed" && r != &report.total;
    t.row({label, format_count(r->token_budget), format_count(r->tokens),
           format_count(r->tokens_per_device_hour), format_hours(r->projected_device_hours),
           format_hours(r->projected_device_hours * r->h800_factor),
           one_device_count
               ? number("%.3g", r->projected_device_hours / static_cast<double>(r->world) / 24.0)
               : "—",
           format_usd(r->projected_usd)});
  }
  return "## Projection to the token budget\n\n" + t.str() +
         "\nThe phase's token budget (cost.token_budget, else train.steps × tokens per step) at "
         "the run's own tokens per GPU-hour so far, startup and lost work included.\n";
}

std::string comparison_section(const CostReport& report) {
  Table t({"Run", "Devices", "GPU-hours", "H800 factor", "H800-equiv. hours", "Tokens",
           "H800-equiv. hours / 1T tokens", "$"});
  for (const auto& [label, r] : rows_and_total(report, true)) {
    t.row({label, devices(*r), format_hours(r->device_hours), number("%.4g", r->h800_factor),
           format_hours(r->h800_equivalent_hours), format_count(r->tokens),
           format_hours(h800_hours_per_trillion_tokens(*r)), format_usd(r->usd)});
  }
  const auto refs = reference_comparisons(report.total.usd_per_gpu_hour);
  std::string notes;
  for (const ReferenceComparison& c : refs) {
    t.row({c.name + " (published)", c.gpu, format_hours(c.gpu_hours),
           number("%.4g", c.h800_factor), format_hours(c.h800_equivalent_hours),
           format_count(c.tokens), format_hours(c.h800_hours_per_trillion_tokens),
           format_usd(c.usd)});
    notes += "- " + c.name + ": " + c.source + ". Its hours per 1T tokens count " +
             c.per_trillion_basis + " over its " + format_count(c.tokens) +
             " pre-training tokens" +
             (c.priced_at_fallback
                  ? "; the source gives no price, so it is priced at this report's " +
                        format_usd(c.usd_per_gpu_hour) + " per GPU-hour"
                  : "; priced as its source prices it, " + format_usd(c.usd_per_gpu_hour) +
                        " per GPU-hour") +
             ".\n";
  }
  return "## Beside DeepSeek-V3 and Llama 3.1 405B\n\n" + t.str() + "\n**Normalisation.** " +
         report.normalisation + "\n\n" + notes;
}

std::string problems_section(const CostReport& report) {
  std::string text = "## Ledger problems\n\n";
  if (report.problems.empty()) return text + "None: every ledger line was read.\n";
  text += "These ledger lines were skipped (or contradict others); the report counts the "
          "rest.\n\n";
  for (size_t i = 0; i < report.problems.size(); ++i) {
    const std::string file = i < report.problem_files.size() ? report.problem_files[i] : "";
    const LedgerProblem& p = report.problems[i];
    text += "- `" + file + (p.line > 0 ? ":" + std::to_string(p.line) : "") + "`: " + p.message +
            "\n";
  }
  return text;
}

}  // namespace

std::string report_markdown_summary(const CostReport& report) {
  std::string text = "## Summary\n\n" + summary_table(report);
  if (report.rows.size() > 1) text += "\n" + table_one(report);
  return text;
}

std::string report_markdown(const CostReport& report) {
  std::string text = "# Cost report\n\n";
  for (const CostRow& r : report.rows) {
    text += "- " + row_label(r) + ": " + phase_title(r.phase) + ", from `" + r.source + "`" +
            (r.planned ? " (a prediction of `baleine plan`)" : "") + "\n";
  }
  text += "\nGPU-hours are device-hours: each rank is one device for its whole wall time (a CPU "
          "rank is a device of kind cpu). MFU = useful tokens × training FLOPs per token / "
          "(device-seconds × the device's dense peak).\n\n";
  text += report_markdown_summary(report) + "\n";
  text += segment_section(report) + "\n";
  text += restart_section(report) + "\n";
  text += projection_section(report) + "\n";
  text += comparison_section(report) + "\n";
  text += problems_section(report);
  return text;
}

}  // namespace baleine::cost
