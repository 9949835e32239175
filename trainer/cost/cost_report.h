#pragma once
// What `baleine report` (measured, from a ledger) and `baleine plan` (predicted) produce: one
// row per run or phase, rendered to cost-report.md / .json / .svg; several rows merge into one
// table shaped like DeepSeek-V3's Table 1 (pre-training, context extension, post-training,
// total). H800-equivalent hours: device-hours x (device BF16 dense peak / H800's), so runs on
// other GPUs stand beside V3's on the same footing (stated in every report).
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/cost/ledger.h"
#include "trainer/cost/segments.h"

namespace baleine::cost {

struct RestartCost {
  int64_t restart = 0;
  std::string outcome;         // RestartRecord::outcome
  double device_hours = 0;
  double wall_hours = 0;
  int64_t world = 0;
  int64_t useful_tokens = 0;
  int64_t last_step = 0;
  SegmentSeconds segment_hours{};  // device-hours by segment
};

struct CostRow {
  std::string name;            // run name, or the phase's label
  std::string phase;           // pretraining | context_extension | post_training
  bool planned = false;        // from `baleine plan` (a prediction), not a ledger
  std::string source;          // the run dir, or the config that was planned
  std::string gpu;             // device_table() name
  std::string device_kind;     // gpu | cpu
  int64_t world = 0;           // devices (of the newest restart)
  double peak_bf16_tflops = 0, peak_fp8_tflops = 0;  // per device
  std::string compute;         // precision.compute
  double usd_per_gpu_hour = 0;
  double flops_per_token = 0;
  double active_params = 0;

  double device_hours = 0;     // all segments, all restarts
  SegmentSeconds segment_hours{};  // device-hours by segment
  std::vector<RestartCost> restarts;
  double tokens = 0;           // useful tokens trained
  double tokens_per_device_hour = 0;
  double device_hours_per_trillion_tokens = 0;
  double mfu_bf16 = 0;         // tokens x flops_per_token / (device-seconds x BF16 peak)
  double mfu_fp8 = 0;          // against the FP8 peak; 0 unless compute is fp8
  double usd = 0;
  double h800_factor = 1;      // peak_bf16 / H800's peak_bf16
  double h800_equivalent_hours = 0;
  double token_budget = 0;     // the phase's configured tokens
  double projected_device_hours = 0;  // token_budget at this row's tokens per device-hour
  double projected_usd = 0;
};

struct CostReport {
  std::vector<CostRow> rows;   // one per run or phase, in the order given
  CostRow total;               // sums (rates recomputed from the sums)
  std::vector<LedgerProblem> problems;  // from the ledgers read, with their files
  std::vector<std::string> problem_files;  // problems[i] is in problem_files[i]
  std::string normalisation;   // the H800-equivalence rule in words
};

}  // namespace baleine::cost
