#pragma once
// What compute devices this build can use. The CPU backend is always there; CUDA devices are
// listed when baleine was built with the CUDA backend and a driver + GPU are present.
#include <string>
#include <vector>

namespace baleine::kernels {

struct CudaDevice {
  int index = 0;
  std::string name;
  int sm_major = 0;
  int sm_minor = 0;
  double memory_gib = 0;
};

bool built_with_cuda();
// Empty without the CUDA backend, without a driver, or without a GPU (never throws).
std::vector<CudaDevice> cuda_devices();
// "CUDA 13.0 runtime, driver: none" style summary for --version.
std::string cuda_summary();

}  // namespace baleine::kernels
