#include "trainer/model/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "trainer/model/cuda/cuda_memory.h"
#include "trainer/model/cuda/cuda_ops.h"
#include "trainer/model/cuda/cuda_parameter_ops.h"

namespace baleine::model {

namespace {

namespace kc = baleine::kernels::cuda;

struct CudaBackend {
  kc::DeviceArena arena;
  kc::Stream stream;
  cuda::CudaMemory memory{arena, stream.get()};
  cuda::CudaOps ops{memory};
  cuda::CudaParameterOps parameters{memory};
  Backend backend{"cuda", &memory, &ops, nullptr, &parameters};
};

bool& created() {
  static bool made = false;
  return made;
}

CudaBackend& instance() {
  // Never destroyed: its destructors would free device memory during the CUDA runtime's own
  // shutdown at exit, whose order against static destructors is not defined.
  static CudaBackend* backend = [] {
    created() = true;
    return new CudaBackend();
  }();
  return *backend;
}

}  // namespace

void use_cuda_device(int device) {
  if (created() && instance().arena.device() != device) {
    throw std::logic_error("use_cuda_device(" + std::to_string(device) + "): the CUDA backend "
                           "already lives on device " + std::to_string(instance().arena.device()));
  }
  BALEINE_CUDA_CALL(cudaSetDevice(device));
}

Backend& cuda_backend() { return instance().backend; }

kc::DeviceArena& cuda_backend_arena() { return instance().arena; }

}  // namespace baleine::model
