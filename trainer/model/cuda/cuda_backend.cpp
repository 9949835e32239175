#include "trainer/model/cuda/cuda_backend.h"

#include "trainer/model/cuda/cuda_memory.h"
#include "trainer/model/cuda/cuda_ops.h"

namespace baleine::model {

namespace {

namespace kc = baleine::kernels::cuda;

struct CudaBackend {
  kc::DeviceArena arena;
  kc::Stream stream;
  cuda::CudaMemory memory{arena, stream.get()};
  cuda::CudaOps ops{memory};
  Backend backend{"cuda", &memory, &ops, nullptr};
};

CudaBackend& instance() {
  // Never destroyed: its destructors would free device memory during the CUDA runtime's own
  // shutdown at exit, whose order against static destructors is not defined.
  static CudaBackend* backend = new CudaBackend();
  return *backend;
}

}  // namespace

Backend& cuda_backend() { return instance().backend; }

kc::DeviceArena& cuda_backend_arena() { return instance().arena; }

}  // namespace baleine::model
