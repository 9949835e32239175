#include "trainer/schedule_command.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "parallel/schedule.h"
#include "parallel/schedule_render.h"
#include "parallel/stage_assignment.h"
#include "trainer/cli_args.h"
#include "trainer/config/config.h"
#include "trainer/errors.h"
#include "trainer/train/pipeline_plan.h"
#include "trainer/train/run_dir.h"

namespace baleine::cli {

namespace {

UserError usage_error(const std::string& what) {
  return cli::usage_error(what, "see 'baleine schedule --help'", "baleine schedule");
}

parallel::Costs parse_costs(const std::string& text) {
  std::vector<double> v;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !(x >= 0)) {
      throw usage_error("--costs: '" + item + "' is not a non-negative number");
    }
    v.push_back(x);
  }
  if (v.size() < 4 || v.size() > 5) {
    throw usage_error("--costs needs F,B,W,FB[,transfer] (4 or 5 numbers), got " + text);
  }
  if (v[2] > v[1]) throw usage_error("--costs: W (part of the full backward) must be <= B");
  return {v[0], v[1], v[2], v[3], v.size() == 5 ? v[4] : 0.0};
}

}  // namespace

std::string schedule_usage() {
  return "usage: baleine schedule CONFIG.yaml [--set KEY=VALUE]... [--costs F,B,W,FB[,T]]\n"
         "                        [--svg FILE]\n"
         "  Builds the pipeline schedule of parallel.schedule for parallel.pp ranks and the\n"
         "  step's micro-batches (train.global_batch / (train.micro_batch x parallel.dp)),\n"
         "  prints every rank's ops, simulates them and draws the timeline. Runs no model.\n"
         "  --costs  time of a forward, a full backward, its weight part, an overlapped F&B\n"
         "           pair, and optionally a transfer (default 1,2,1,3,0)\n"
         "  --svg    where to write the timeline picture (default RUN_DIR/schedule.svg)\n";
}

int run_schedule(const std::vector<std::string>& args) {
  std::string config_path, svg_path;
  std::vector<std::string> overrides;
  parallel::Costs costs;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& name) {
      return option_value(args, i, name, "baleine schedule");
    };
    if (a == "--help" || a == "-h") {
      std::cout << schedule_usage();
      return 0;
    } else if (is_option(a, "--set")) {
      overrides.push_back(value("--set"));
    } else if (is_option(a, "--costs")) {
      costs = parse_costs(value("--costs"));
    } else if (is_option(a, "--svg")) {
      svg_path = value("--svg");
    } else if (a.rfind("-", 0) == 0) {
      throw usage_error("unknown option '" + a + "'");
    } else if (config_path.empty()) {
      config_path = a;
    } else {
      throw usage_error("unexpected argument '" + a + "'");
    }
  }
  if (config_path.empty()) throw usage_error("missing CONFIG.yaml");
  const config::RunConfig c = config::load_config(config_path, overrides);

  // The schedule training would run (train::plan_pipeline): with one pipeline rank that is
  // F, B per micro-batch over one stage, whatever parallel.schedule names.
  const train::PipelinePlan plan = train::plan_pipeline(c, 0);
  const parallel::Schedule& schedule = plan.schedule;
  const int ranks = schedule.ranks;
  const int micro_batches = schedule.micro_batches;
  const parallel::SimulationResult result = parallel::simulate(schedule, costs);

  if (ranks == 1) {
    std::cout << "schedule: none (parallel.pp is 1, so parallel.schedule: " << c.parallel.schedule
              << " does not apply): " << micro_batches
              << " micro-batches per step, forward and backward one after another\n";
  } else {
    std::cout << "schedule: " << c.parallel.schedule << ", " << ranks << " pipeline rank(s), "
              << micro_batches << " micro-batches per step (per data-parallel replica)\n";
  }
  std::cout << c.model.layers << (c.model.layers == 1 ? " block" : " blocks") << " over "
            << schedule.stages << (schedule.stages == 1 ? " stage" : " stages")
            << (schedule.directions > 1 ? " (in each direction)" : "") << ":\n"
            << parallel::describe_assignment(plan.stages, c.model.layers);
  for (int r = 0; r < ranks; ++r) {
    std::cout << "rank " << r << " holds";
    for (const auto& st : schedule.stages_of_rank[r]) std::cout << " " << parallel::describe(st);
    std::cout << "; " << schedule.ops[r].size() << " ops:\n ";
    int width = 1;
    for (size_t i = 0; i < schedule.ops[r].size(); ++i) {
      const std::string op = parallel::describe(schedule.ops[r][i]);
      if (width + op.size() + 2 > 100) {
        std::cout << "\n ";
        width = 1;
      }
      std::cout << " " << op << (i + 1 < schedule.ops[r].size() ? "," : "");
      width += static_cast<int>(op.size()) + 2;
    }
    std::cout << "\n";
  }
  if (!result.ok) {
    std::cerr << "internal error: the generated schedule fails its check: " << result.error
              << "\nHINT: this is a bug in baleine's schedule generator; please report it\n";
    return 1;
  }
  std::string formula;
  const double published = parallel::published_bubble(schedule, costs, &formula);
  std::printf("simulated with F=%g B=%g W=%g F&B=%g transfer=%g: makespan %g\n", costs.F,
              costs.B, costs.W, costs.FB, costs.transfer, result.makespan);
  for (int r = 0; r < ranks; ++r) {
    std::printf("  rank %d: busy %g, bubble %g (%.1f%%), peak activations %d\n", r,
                result.busy[r], result.bubble[r], 100.0 * result.bubble[r] / result.makespan,
                result.peak_activations[r]);
  }
  double worst = 0;
  for (double b : result.bubble) worst = std::max(worst, b);
  std::cout << "published bubble: " << formula << "; simulated, worst rank: " << worst
            << (std::abs(worst - published) < 1e-9 ? " (equal)" : " (differs: the published "
                "figure assumes F = B - W and, for DualPipe, F&B = F + B)")
            << "\n\n";
  std::cout << parallel::text_timeline(schedule, result);

  if (svg_path.empty()) {
    std::filesystem::create_directories(c.run.dir);
    svg_path = c.run.dir + "/schedule.svg";
  }
  train::write_file_atomically(svg_path, parallel::svg_timeline(schedule, result, costs));
  std::cout << "timeline: " << svg_path << "\n";
  return 0;
}

}  // namespace baleine::cli
