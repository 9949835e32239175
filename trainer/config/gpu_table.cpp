#include "trainer/config/gpu_table.h"

#include <algorithm>
#include <cctype>
#include <regex>
#include <utility>

namespace baleine::config {

namespace {

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

// Every figure is the DENSE tensor-core peak: datasheets print the 2:4-sparsity figure with an
// asterisk, which is twice the dense one, and MFU against it would read half of what it is.
// Where a datasheet gives only the sparse figure, the row halves it and says so.
const std::vector<DeviceSpec>& device_table() {
  static const std::vector<DeviceSpec> table = {
      // Turing has no BF16 tensor cores: the 16-bit figure is FP16 with FP32 accumulate.
      {"T4", "gpu", 65.0, 0.0, 16,
       "NVIDIA T4 Tensor Core GPU datasheet (2019): mixed-precision (FP16/FP32) 65 TFLOPS; "
       "Turing has no BF16 or FP8 tensor cores, so the 16-bit column is FP16"},
      {"A10", "gpu", 125.0, 0.0, 24,
       "NVIDIA A10 Tensor Core GPU datasheet (2021): BF16 Tensor Core 125 TF (250 TF with "
       "sparsity); Ampere has no FP8"},
      {"A100-40", "gpu", 312.0, 0.0, 40,
       "NVIDIA A100 Tensor Core GPU datasheet (2021), A100 40GB: BF16 Tensor Core 312 TFLOPS "
       "(624 with sparsity); Ampere has no FP8"},
      {"A100-80", "gpu", 312.0, 0.0, 80,
       "NVIDIA A100 Tensor Core GPU datasheet (2021), A100 80GB SXM: BF16 Tensor Core 312 "
       "TFLOPS (624 with sparsity); Ampere has no FP8"},
      // The export variant of the A100: same compute, NVLink cut to 400 GB/s.
      {"A800", "gpu", 312.0, 0.0, 80,
       "NVIDIA A800 80GB datasheet (2022): BF16 Tensor Core 312 TFLOPS (624 with sparsity), as "
       "the A100; Ampere has no FP8"},
      {"L4", "gpu", 121.0, 242.5, 24,
       "NVIDIA L4 Tensor Core GPU datasheet (2023): BF16 242 and FP8 485 TFLOPS with sparsity, "
       "halved here to the dense peaks"},
      {"L40S", "gpu", 362.05, 733.0, 48,
       "NVIDIA L40S GPU datasheet (2023): BF16 Tensor Core 362.05 TFLOPS, FP8 733 TFLOPS "
       "(733 and 1,466 with sparsity)"},
      // GeForce tensor cores run at half rate with FP32 accumulation, which training needs.
      {"RTX-4090", "gpu", 165.2, 330.3, 24,
       "NVIDIA Ada GPU Architecture whitepaper (2023), GeForce RTX 4090: peak BF16 and FP8 "
       "tensor TFLOPS with FP32 accumulate, 165.2 and 330.3 (dense)"},
      {"RTX-3090", "gpu", 71.0, 0.0, 24,
       "NVIDIA Ampere GA102 GPU Architecture whitepaper (2021), GeForce RTX 3090: peak BF16 "
       "tensor TFLOPS with FP32 accumulate 71 (142 with sparsity); Ampere has no FP8"},
      {"H100-SXM", "gpu", 989.5, 1979.0, 80,
       "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 SXM: BF16 1,979 and FP8 3,958 "
       "TFLOPS with sparsity, halved here to the dense peaks"},
      {"H100-PCIe", "gpu", 756.5, 1513.0, 80,
       "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 PCIe: BF16 1,513 and FP8 3,026 "
       "TFLOPS with sparsity, halved here to the dense peaks"},
      // DeepSeek-V3's GPU: the export variant of the H100 SXM (same die and tensor cores,
      // NVLink cut to 400 GB/s), so the same dense peaks.
      {"H800", "gpu", 989.5, 1979.0, 80,
       "NVIDIA H800 SXM5 datasheet (2023): the H100 SXM's BF16 1,979 and FP8 3,958 TFLOPS "
       "with sparsity, halved here to the dense peaks"},
      {"H20", "gpu", 148.0, 296.0, 96,
       "NVIDIA HGX H20 product brief (2024): FP16/BF16 148 and FP8 296 TFLOPS dense, 96 GB "
       "HBM3"},
      {"H200", "gpu", 989.5, 1979.0, 141,
       "NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM: BF16 1,979 and FP8 3,958 "
       "TFLOPS with sparsity, halved here to the dense peaks; 141 GB HBM3e"},
      {"B200", "gpu", 2250.0, 4500.0, 180,
       "NVIDIA HGX B200 datasheet (2024): per GPU FP16/BF16 4.5 and FP8 9 PFLOPS with "
       "sparsity, halved here to the dense peaks; 180 GB HBM3e"},
      // A CPU rank: no datasheet gives a training peak, so this is a NOMINAL per-core FP32 FMA
      // peak; the trainer multiplies it by the rank's OpenMP threads.
      {"cpu", "cpu", 0.1, 0.0, 0,
       "nominal per-core FP32 peak, not a datasheet: 2 AVX2 FMA units x 8 FP32 lanes x 2 FLOP "
       "x ~3 GHz = 96 GFLOP/s, rounded to 0.1 TFLOP/s; memory is the host's (not tabled)"},
  };
  return table;
}

const DeviceSpec* find_device(const std::string& name) {
  const std::string wanted = lowercase(name);
  for (const DeviceSpec& spec : device_table()) {
    if (lowercase(spec.name) == wanted) return &spec;
  }
  return nullptr;
}

std::vector<std::string> device_names() {
  std::vector<std::string> names;
  for (const DeviceSpec& spec : device_table()) names.push_back(spec.name);
  return names;
}

std::string device_row_for_gpu_name(const std::string& gpu_name) {
  // Checked in order: H20 must not take an H200, L4 an L40S, A10 an A100 (word boundaries), and
  // the H100 variants come before the plain H100 (SXM). bench/pytorch_reference.py keeps the
  // same list for its side of the benchmark.
  static const std::pair<const char*, const char*> patterns[] = {
      {R"(\bH200\b)", "H200"},           {R"(\bH20\b)", "H20"},
      {R"(\bH800\b)", "H800"},           {R"(\bH100\b.*\bPCIE\b)", "H100-PCIe"},
      {R"(\bH100\b.*\bNVL\b)", ""},      {R"(\bH100\b)", "H100-SXM"},
      {R"(\bB200\b)", "B200"},           {R"(\bA100\b.*\b40GB\b)", "A100-40"},
      {R"(\bA100\b)", "A100-80"},        {R"(\bA800\b)", "A800"},
      {R"(\bL40S\b)", "L40S"},           {R"(\bL4\b)", "L4"},
      {R"(\bRTX 4090\b)", "RTX-4090"},   {R"(\bRTX 3090\b)", "RTX-3090"},
      {R"(\bA10\b)", "A10"},             {R"(\bT4\b)", "T4"},
  };
  std::string upper = gpu_name;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  for (const auto& [pattern, row] : patterns) {
    if (std::regex_search(upper, std::regex(pattern))) return row;
  }
  return "";
}

}  // namespace baleine::config
