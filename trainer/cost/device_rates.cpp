#include "trainer/cost/device_rates.h"

#include "trainer/config/gpu_table.h"
#include "trainer/errors.h"

namespace baleine::cost {

DeviceRates device_rates(const config::CostSection& cost, int threads_per_rank) {
  const config::DeviceSpec* spec = config::find_device(cost.gpu);
  if (!spec) throw UserError("", "cost.gpu", "unknown device '" + cost.gpu + "'");
  DeviceRates r;
  r.gpu = spec->name;
  r.kind = spec->kind;
  r.usd_per_hour = cost.usd_per_gpu_hour;
  r.peak_fp8_tflops = spec->fp8_tflops;
  if (cost.peak_tflops > 0) {
    r.peak_bf16_tflops = cost.peak_tflops;
    r.peak_formula = "cost.peak_tflops = " + std::to_string(cost.peak_tflops) + " TFLOP/s";
  } else if (spec->kind == "cpu") {
    r.peak_bf16_tflops = spec->bf16_tflops * threads_per_rank;
    r.peak_formula = std::to_string(threads_per_rank) + " thread(s) x " +
                     std::to_string(spec->bf16_tflops) + " TFLOP/s per core (nominal)";
  } else {
    r.peak_bf16_tflops = spec->bf16_tflops;
    r.peak_formula = spec->name + " datasheet";
  }
  return r;
}

}  // namespace baleine::cost
