#pragma once
// `baleine report`: a CostRow per run (from its ledger) or per phase, merged into a CostReport
// and rendered to cost-report.md, cost-report.json and cost-report.svg (see cost_report.h for
// what each field means). report.cpp builds and merges rows; report_markdown.cpp,
// report_json.cpp and report_svg.cpp render them; report_json.cpp also reads a report back,
// so reports of several phases can be merged later.
#include <string>
#include <vector>

#include "trainer/cost/cost_report.h"
#include "trainer/cost/ledger.h"

namespace baleine::cost {

// One row from a ledger read back by read_ledger. Every restart counts: its device-hours by
// segment (lost work included), its useful tokens, and its own LedgerStart (world, device,
// peaks, price, FLOPs per token), so a run resumed on another GPU is costed at each device's
// rate. The row's name, phase, device, price and token budget are the newest restart's.
// `source` is what the row says it came from (the run dir). Throws UserError naming the
// ledger when it has no start record at all (nothing to cost).
CostRow row_from_ledger(const LedgerContents& ledger, const std::string& source);

// The rows in the order given, their total (sums; rates recomputed from the sums) and the
// normalisation rule in words. The ledgers' problems are the caller's to add (problems and
// problem_files), since a merged report's rows come from several files.
CostReport make_report(std::vector<CostRow> rows);

// Reads what write_report_files wrote as cost-report.json. Throws UserError naming the file
// (and the key) when it cannot be read or is not a cost report.
CostReport read_report_json(const std::string& path);

// Writes DIR/cost-report.md, .json and .svg, each atomically (a temporary file renamed over
// the old one, so a reader never sees half a report), creating DIR when needed. Returns the
// three paths. Throws UserError naming the path when DIR cannot be written.
std::vector<std::string> write_report_files(const CostReport& report, const std::string& dir);

std::string report_markdown(const CostReport& report);
// The summary table (and the Table-1 view when there are several rows): what the CLI prints.
std::string report_markdown_summary(const CostReport& report);
std::string report_json(const CostReport& report);
std::string report_svg(const CostReport& report);

// ---- Shared by the renderers -----------------------------------------------------------------

// H800's dense BF16 peak (the device table's), the unit of H800-equivalent hours.
double h800_peak_bf16_tflops();

// A published run on the same footing as a report row: H800-equivalent hours by the same rule.
struct ReferenceComparison {
  std::string name;
  std::string gpu;
  double gpu_hours = 0;             // all phases, on its own GPU
  double h800_factor = 1;           // its GPU's BF16 peak / H800's
  double h800_equivalent_hours = 0;
  double tokens = 0;                // pre-training tokens
  // H800-equivalent hours per trillion pre-training tokens: pre-training hours when the
  // source splits its phases (V3: 2664K / 14.8T = 180K), else all its hours.
  double h800_hours_per_trillion_tokens = 0;
  std::string per_trillion_basis;   // which hours the rate above counts
  double usd_per_gpu_hour = 0;      // its own price, or the fallback when it gives none
  bool priced_at_fallback = false;
  double usd = 0;
  std::string source;
};
// reference_runs() normalised; runs without a published price are priced at `fallback_usd`.
std::vector<ReferenceComparison> reference_comparisons(double fallback_usd_per_gpu_hour);

// Device-hours of a row that no segment holds: a planned row's (a plan predicts hours, not
// where they go), 0 for a row from a ledger (its segments add up to its hours).
double unsplit_hours(const CostRow& row);

// H800-equivalent hours per trillion tokens of a row (0 when it has no tokens).
double h800_hours_per_trillion_tokens(const CostRow& row);

// Counts (tokens) are written with units.h's format_count, hours and dollars with its
// format_hours and format_usd.
// "35.2%", "0.0123%" (a fraction in [0, 1] as a percentage with 3 significant digits).
std::string format_percent(double fraction);
// The display name of a phase key: "pretraining" -> "Pre-Training", ... (DeepSeek-V3's
// Table 1 headings); other keys as they are.
std::string phase_title(const std::string& phase);

}  // namespace baleine::cost
