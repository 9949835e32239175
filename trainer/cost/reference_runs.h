#pragma once
// The published runs baleine's plans and reports stand beside.
#include <string>
#include <vector>

namespace baleine::cost {

struct ReferencePhase {
  std::string phase;          // "pretraining", "context_extension", "post_training"
  double gpu_hours = 0;
};

struct ReferenceRun {
  std::string name;           // "DeepSeek-V3", "Llama 3.1 405B"
  std::string gpu;            // a device_table() name
  double gpu_hours = 0;       // all phases
  double tokens = 0;          // pre-training tokens
  double active_params = 0;
  double total_params = 0;
  double usd_per_gpu_hour = 0;  // as the source prices it (0: the source gives no price)
  std::vector<ReferencePhase> phases;  // empty when the source gives only a total
  std::string source;
};

const std::vector<ReferenceRun>& reference_runs();

}  // namespace baleine::cost
