// CUDA device discovery (the CUDA twin of kernels/cpu/device_query.cpp). Never throws: a
// machine without a driver or a GPU simply has no devices.
#include <cuda_runtime.h>

#include <string>

#include "kernels/device.h"

namespace baleine::kernels {

bool built_with_cuda() { return true; }

std::vector<CudaDevice> cuda_devices() {
  std::vector<CudaDevice> devices;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back({i, prop.name, prop.major, prop.minor,
                       static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0)});
  }
  return devices;
}

std::string cuda_summary() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  const bool has_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0;
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  std::string s = "CUDA runtime " + version(runtime) + ", driver " +
                  (has_driver ? version(driver) : std::string("none"));
  s += ", devices: " + std::to_string(cuda_devices().size());
  return s;
}

}  // namespace baleine::kernels
