#pragma once
// What a device-hour of a run is worth: cost.gpu's dense peaks and cost.usd_per_gpu_hour. One
// rule for the trainer's MFU and the ledger (trainer/train/run_ledger) and for `baleine plan`.
#include <string>

#include "trainer/config/config.h"

namespace baleine::cost {

struct DeviceRates {
  std::string gpu, kind;     // "H800", "gpu" / "cpu", "cpu"
  double peak_bf16_tflops = 0, peak_fp8_tflops = 0;  // per device; FP8 0 = none
  double usd_per_hour = 0;
  std::string peak_formula;  // how the BF16 peak was found, for the start banner
};

// The table's peaks for cost.gpu. cost.peak_tflops, when set, replaces the BF16 peak only (the
// FP8 peak stays the table's). A CPU rank's BF16 peak is the table's nominal per-core figure
// times its OpenMP threads. Throws UserError for a device the table does not have.
DeviceRates device_rates(const config::CostSection& cost, int threads_per_rank);

}  // namespace baleine::cost
