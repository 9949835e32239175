#pragma once
// The devices a run can be costed on (cost.gpu): peak dense tensor throughput from the vendors'
// datasheets, which MFU is measured against and which `baleine report` uses to normalise other
// GPUs' hours to H800-equivalent hours. Each row cites its datasheet (gpu_table.cpp).
#include <string>
#include <vector>

namespace baleine::config {

struct DeviceSpec {
  std::string name;           // "H800", "A100-80", "cpu", ... (what cost.gpu names)
  std::string kind;           // "gpu" or "cpu"
  double bf16_tflops = 0;     // dense (no 2:4 sparsity) BF16 tensor peak, TFLOP/s
  double fp8_tflops = 0;      // dense FP8 tensor peak; 0 = no FP8 tensor cores
  double memory_gb = 0;
  std::string source;         // the datasheet the figures come from
};

// Every row, in a stable order (the error hint lists them).
const std::vector<DeviceSpec>& device_table();
// The row named `name` (case-insensitive), or nullptr.
const DeviceSpec* find_device(const std::string& name);
std::vector<std::string> device_names();

// The row for a CUDA device name as the driver reports it ("NVIDIA H200", "NVIDIA A100-SXM4-40GB",
// "Tesla T4"), or "" when the table has none (an H100 NVL, a GPU not listed). A run on
// device: cuda without cost.gpu is costed on this row.
std::string device_row_for_gpu_name(const std::string& gpu_name);

}  // namespace baleine::config
