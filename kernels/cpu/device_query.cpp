// Device discovery for builds without the CUDA backend (see kernels/cuda/device_query.cu).
#include "kernels/device.h"

#ifndef BALEINE_HAVE_CUDA
namespace baleine::kernels {

bool built_with_cuda() { return false; }
std::vector<CudaDevice> cuda_devices() { return {}; }
std::string cuda_summary() { return "CUDA backend not built"; }

}  // namespace baleine::kernels
#endif
