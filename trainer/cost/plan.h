#pragma once
// `baleine plan`: what a config will cost before it runs. From the config alone (no MPI, no
// model built): parameters, FLOPs per token, memory per rank by component, and, at a planning
// throughput, the device-hours, days and dollars of the token budget, beside the published
// runs (reference_runs.h). The throughput is an input, never measured here: a flag, else the
// config's cost.plan (gpu_hours_per_trillion_tokens, then tokens_per_gpu_s, then mfu).
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/config/gpu_table.h"
#include "trainer/cost/cost_report.h"
#include "trainer/cost/flops.h"
#include "trainer/cost/memory_plan.h"

namespace baleine::cost {

// The command line's say; 0 = not given. At most one of the three throughputs.
struct PlanOptions {
  double tokens = 0;
  double mfu = 0;
  double tokens_per_gpu_s = 0;
  double gpu_hours_per_trillion_tokens = 0;
};

struct Plan {
  std::string config;          // the YAML it came from
  config::DeviceSpec device;   // cost.gpu's row; its BF16 peak is cost.peak_tflops when set
  int64_t world = 0;           // devices: pp x dp
  FlopsPerToken flops;
  MemoryPlan memory;
  double device_memory_bytes = 0;  // the datasheet's GB x 1e9; 0 = not tabled (cpu)
  bool fits = true;                // the most loaded rank fits device_memory_bytes

  double tokens = 0;
  std::string tokens_source;       // "--tokens", "cost.token_budget" or the steps product
  double tokens_per_device_s = 0;
  std::string throughput_source;   // e.g. "cost.plan.gpu_hours_per_trillion_tokens = 180000"
  double mfu_bf16 = 0;             // tokens/s x FLOPs per token / BF16 dense peak
  double mfu_fp8 = 0;              // against the FP8 dense peak; 0 unless compute is fp8
  double device_hours = 0;
  double wall_days = 0;            // on `world` devices
  double usd = 0;
};

// The config must have passed validation. Throws std::invalid_argument when more than one
// throughput option is set (the CLI reports that as a usage error before calling).
Plan make_plan(const config::RunConfig& config, const PlanOptions& options);

// The plan as a cost-report row (planned = true): a prediction, so it has no segments and no
// restarts; its projected figures are its predicted ones.
CostRow planned_row(const config::RunConfig& config, const Plan& plan);

// A published run beside the plan, at this config's price per GPU-hour.
struct ReferenceLine {
  std::string name;         // "DeepSeek-V3", "DeepSeek-V3 pretraining", "Llama 3.1 405B"
  std::string gpu;
  double gpu_hours = 0;
  double h800_equivalent_hours = 0;  // gpu_hours x the GPU's BF16 dense peak / H800's
  double gpu_hours_per_trillion_tokens = 0;  // pre-training hours / pre-training tokens; the
                                             // total when the source gives no split; 0 for a
                                             // later phase (no source counts its tokens)
  std::string per_trillion_basis;    // "pre-training", "all phases" or "no token count"
  double usd = 0;
};

// Every reference run whole, and also its phase `phase` when the source splits it.
std::vector<ReferenceLine> reference_lines(double usd_per_gpu_hour, const std::string& phase);

void print_plan(const config::RunConfig& config, const Plan& plan, std::ostream& out);

}  // namespace baleine::cost
