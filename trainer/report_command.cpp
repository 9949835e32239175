// `baleine report`: the cost report of one run, or of several runs and earlier reports merged
// into one table shaped like DeepSeek-V3's Table 1 (trainer/cost/report.h does the work).
#include "trainer/report_command.h"

#include <filesystem>
#include <iostream>

#include "trainer/cli_args.h"
#include "trainer/cost/ledger.h"
#include "trainer/cost/report.h"
#include "trainer/errors.h"

namespace baleine::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* kWhere = "baleine report";

UserError usage_error(const std::string& what) {
  return cli::usage_error(what, "see 'baleine report --help'", kWhere);
}

const char* const kLedgerHint =
    "`baleine train CONFIG.yaml` writes RUN_DIR/ledger.jsonl (RUN_DIR is the config's run.dir); "
    "pass that directory, its ledger.jsonl, or a cost-report.json of an earlier report";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "runs/a/" and "runs/a" name the same run; the row's default name is its last component.
std::string clean_path(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// One input's rows, with its ledger problems printed as warnings (the report still counts the
// other lines, and lists these).
struct Input {
  std::vector<cost::CostRow> rows;
  std::vector<cost::LedgerProblem> problems;
  std::vector<std::string> problem_files;
  std::string dir;  // where a report of this input alone goes by default
};

Input read_ledger_input(const std::string& ledger_path, const std::string& run_dir) {
  const cost::LedgerContents ledger = cost::read_ledger(ledger_path);
  for (const cost::LedgerProblem& p : ledger.problems) {
    std::cerr << ledger.path << ":" << p.line << ": warning: " << p.message
              << " (line skipped; the report lists it)\n";
  }
  Input input;
  input.rows.push_back(cost::row_from_ledger(ledger, run_dir));
  for (const cost::LedgerProblem& p : ledger.problems) {
    input.problems.push_back(p);
    input.problem_files.push_back(ledger.path);
  }
  input.dir = run_dir;
  return input;
}

Input read_report_input(const std::string& path) {
  const std::string parent = fs::path(path).parent_path().string();
  const cost::CostReport earlier = cost::read_report_json(path);
  Input input;
  input.rows = earlier.rows;
  input.problems = earlier.problems;
  input.problem_files = earlier.problem_files;
  input.dir = parent.empty() ? "." : parent;
  return input;
}

Input read_input(const std::string& arg) {
  const std::string path = clean_path(arg);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string ledger = (fs::path(path) / "ledger.jsonl").string();
    const std::string report = (fs::path(path) / "cost-report.json").string();
    // A directory `baleine plan --report-dir` wrote holds a report and no ledger.
    if (!fs::exists(ledger, ec) && fs::exists(report, ec)) return read_report_input(report);
    if (!fs::exists(ledger, ec)) {
      throw UserError(path, "", "no ledger.jsonl in this directory (not a training run?)",
                      kLedgerHint);
    }
    return read_ledger_input(ledger, path);
  }
  if (!fs::exists(path, ec)) {
    throw UserError(path, "", "no such run directory or file", kLedgerHint);
  }
  const std::string parent = fs::path(path).parent_path().string();
  if (ends_with(path, ".json")) return read_report_input(path);
  // Any other file is taken for a ledger (ledger.jsonl, or a copy of one).
  return read_ledger_input(path, parent.empty() ? "." : parent);
}

}  // namespace

std::string report_usage() {
  return "usage: baleine report RUN_DIR|cost-report.json... [--output DIR]\n"
         "  Reads each run's GPU-hour ledger (RUN_DIR/ledger.jsonl) and writes cost-report.md,\n"
         "  cost-report.json and cost-report.svg: GPU-hours by segment and by restart, tokens,\n"
         "  tokens per GPU-hour, MFU, $, the projection to the token budget, and the run beside\n"
         "  DeepSeek-V3 and Llama 3.1 405B in H800-equivalent hours.\n"
         "  One input: the files go into its directory (or --output DIR).\n"
         "  Several inputs (run directories, ledgers, cost-report.json files of earlier\n"
         "  reports or plans, or directories holding one): one row each, merged into one\n"
         "  table shaped like DeepSeek-V3's Table 1 (pre-training, context extension,\n"
         "  post-training); --output DIR is required.\n"
         "  --output DIR  where to write the three files\n"
         "Bad ledger lines are warned about (FILE:LINE), skipped and listed in the report.\n";
}

int run_report(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  std::string output;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << report_usage();
      return 0;
    } else if (is_option(a, "--output")) {
      output = option_value(args, i, "--output", kWhere);
      if (output.empty()) throw usage_error("--output needs a directory");
    } else if (a.rfind("-", 0) == 0) {
      throw usage_error("unknown option '" + a + "'");
    } else {
      inputs.push_back(a);
    }
  }
  if (inputs.empty()) throw usage_error("missing RUN_DIR (or cost-report.json files to merge)");
  if (inputs.size() > 1 && output.empty()) {
    throw cli::usage_error(
        "merging " + std::to_string(inputs.size()) + " inputs needs --output DIR",
        "add --output DIR: the merged report belongs to no single run directory", kWhere);
  }

  std::vector<cost::CostRow> rows;
  std::vector<cost::LedgerProblem> problems;
  std::vector<std::string> problem_files;
  std::string default_dir;
  for (const std::string& arg : inputs) {
    Input input = read_input(arg);
    rows.insert(rows.end(), input.rows.begin(), input.rows.end());
    problems.insert(problems.end(), input.problems.begin(), input.problems.end());
    problem_files.insert(problem_files.end(), input.problem_files.begin(),
                         input.problem_files.end());
    default_dir = input.dir;
  }
  if (rows.empty()) {
    throw UserError(inputs.front(), "", "the inputs hold no rows to report",
                    "pass a run directory of `baleine train`, or a cost-report.json with rows");
  }
  cost::CostReport report = cost::make_report(std::move(rows));
  report.problems = std::move(problems);
  report.problem_files = std::move(problem_files);

  const std::vector<std::string> paths =
      cost::write_report_files(report, output.empty() ? default_dir : output);
  std::cout << cost::report_markdown_summary(report) << "\n";
  if (!report.problems.empty()) {
    std::cout << report.problems.size()
              << " ledger line(s) skipped (warnings above); the report lists them.\n";
  }
  for (const std::string& p : paths) std::cout << "wrote " << p << "\n";
  return 0;
}

}  // namespace baleine::cli
