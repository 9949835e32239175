#include "trainer/plan_command.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>

#include "trainer/cli_args.h"
#include "trainer/config/config.h"
#include "trainer/cost/plan.h"
#include "trainer/cost/report.h"
#include "trainer/errors.h"

namespace baleine::cli {

namespace {

const char* kWhere = "baleine plan";

UserError plan_error(const std::string& what, const std::string& hint = "") {
  return usage_error(what, hint.empty() ? "see 'baleine plan --help'" : hint, kWhere);
}

// A positive number, in plain or scientific notation, optionally with a K, M, B (or G) or T
// suffix (10^3 ... 10^12): "14.8e12", "14.8T" and "14800B" are the same token budget.
double parse_amount(const std::string& option, const std::string& text, bool allow_suffix) {
  std::string digits = text;
  double scale = 1;
  if (allow_suffix && !digits.empty()) {
    switch (std::toupper(static_cast<unsigned char>(digits.back()))) {
      case 'K': scale = 1e3; break;
      case 'M': scale = 1e6; break;
      case 'B':
      case 'G': scale = 1e9; break;
      case 'T': scale = 1e12; break;
      default: break;
    }
    if (scale != 1) digits.pop_back();
  }
  char* end = nullptr;
  const double value = std::strtod(digits.c_str(), &end);
  if (digits.empty() || *end != '\0' || !std::isfinite(value) || !(value > 0)) {
    throw plan_error(option + ": '" + text + "' is not a positive number",
                     allow_suffix ? "e.g. " + option + " 14.8e12 or " + option + " 14.8T"
                                  : "e.g. " + option + " 0.4");
  }
  return value * scale;
}

}  // namespace

std::string plan_usage() {
  return "usage: baleine plan CONFIG.yaml [--set KEY=VALUE]... [--tokens N]\n"
         "                    [--mfu X | --tokens-per-gpu-s Y |\n"
         "                     --gpu-hours-per-trillion-tokens Z]\n"
         "                    [--report-dir DIR]\n"
         "  Predicts what a config will cost, without training (no MPI, no model built):\n"
         "  parameters (total, active), FLOPs per token, memory per rank by component, and\n"
         "  the GPU-hours, days on pp x dp devices of cost.gpu and $ at cost.usd_per_gpu_hour\n"
         "  for the token budget, beside DeepSeek-V3's and Llama 3.1 405B's published runs.\n"
         "  --tokens N   token budget (e.g. 14.8e12 or 14.8T); default cost.token_budget,\n"
         "               else train.steps x global_batch x seq_len\n"
         "  --mfu X      planning throughput as a fraction of the BF16 dense peak, in (0, 1]\n"
         "  --tokens-per-gpu-s Y              tokens per second per device\n"
         "  --gpu-hours-per-trillion-tokens Z  device-hours per 10^12 tokens (V3: 180000)\n"
         "               (one at most; default: cost.plan.gpu_hours_per_trillion_tokens, else\n"
         "               cost.plan.tokens_per_gpu_s, else cost.plan.mfu)\n"
         "  --report-dir DIR  also write the plan as DIR/cost-report.md, .json and .svg\n";
}

int run_plan(const std::vector<std::string>& args) {
  std::string config_path, report_dir;
  std::vector<std::string> overrides;
  cost::PlanOptions options;
  std::string throughput_flag;  // the one given, for the conflict message
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& name) {
      if (a == name && i + 1 >= args.size()) throw plan_error(name + " needs a value");
      return option_value(args, i, name, kWhere);
    };
    auto throughput = [&](const std::string& name, double* target) {
      if (!throughput_flag.empty()) {
        throw plan_error(name + " and " + throughput_flag + " both set the planning throughput",
                         "give one of --mfu, --tokens-per-gpu-s, "
                         "--gpu-hours-per-trillion-tokens");
      }
      throughput_flag = name;
      *target = parse_amount(name, value(name), false);
    };
    if (a == "--help" || a == "-h") {
      std::cout << plan_usage();
      return 0;
    } else if (is_option(a, "--set")) {
      overrides.push_back(value("--set"));
    } else if (is_option(a, "--tokens")) {
      options.tokens = parse_amount("--tokens", value("--tokens"), true);
    } else if (is_option(a, "--mfu")) {
      throughput("--mfu", &options.mfu);
      if (options.mfu > 1) {
        throw plan_error("--mfu: " + std::to_string(options.mfu) +
                             " is more than the whole peak",
                         "MFU is a fraction of the BF16 dense peak, in (0, 1]: e.g. --mfu 0.4");
      }
    } else if (is_option(a, "--tokens-per-gpu-s")) {
      throughput("--tokens-per-gpu-s", &options.tokens_per_gpu_s);
    } else if (is_option(a, "--gpu-hours-per-trillion-tokens")) {
      throughput("--gpu-hours-per-trillion-tokens", &options.gpu_hours_per_trillion_tokens);
    } else if (is_option(a, "--report-dir")) {
      report_dir = value("--report-dir");
    } else if (a.rfind("-", 0) == 0) {
      throw plan_error("unknown option '" + a + "'");
    } else if (config_path.empty()) {
      config_path = a;
    } else {
      throw plan_error("unexpected argument '" + a + "'");
    }
  }
  if (config_path.empty()) throw plan_error("missing CONFIG.yaml");

  const config::RunConfig config = config::load_config(config_path, overrides);
  const cost::Plan plan = cost::make_plan(config, options);
  cost::print_plan(config, plan, std::cout);
  if (!report_dir.empty()) {
    const cost::CostReport report = cost::make_report({cost::planned_row(config, plan)});
    std::cout << "\nplanned cost report:";
    for (const std::string& path : cost::write_report_files(report, report_dir)) {
      std::cout << " " << path;
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace baleine::cli
