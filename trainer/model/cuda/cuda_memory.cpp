#include "trainer/model/cuda/cuda_memory.h"

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/cuda/check.h"

namespace baleine::model::cuda {

namespace kc = baleine::kernels::cuda;

CudaMemory::CudaMemory(kc::DeviceArena& arena, cudaStream_t stream)
    : arena_(arena), stream_(stream) {}

std::string CudaMemory::name() const { return "cuda:" + std::to_string(arena_.device()); }

void* CudaMemory::allocate(size_t bytes) { return arena_.allocate(bytes, stream_); }

void CudaMemory::release(void* ptr, size_t) {
  if (ptr != nullptr) arena_.release(ptr, stream_);
}

void CudaMemory::copy(void* dst, const void* src, size_t bytes) {
  if (bytes != 0 && dst != src) kc::copy_on_device(dst, src, bytes, stream_);
}

void CudaMemory::zero(void* ptr, size_t bytes) {
  if (bytes != 0) kc::fill_zero(ptr, bytes, stream_);
}

void CudaMemory::to_host(void* host, const void* src, size_t bytes) {
  if (bytes == 0) return;
  kc::copy_to_host(host, src, bytes, stream_);
  BALEINE_CUDA_CALL(cudaStreamSynchronize(stream_));
}

void CudaMemory::from_host(void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return;
  kc::copy_to_device(dst, host, bytes, stream_);
  // A pageable source may be reused by the caller at once: wait until the copy has read it.
  BALEINE_CUDA_CALL(cudaStreamSynchronize(stream_));
}

void CudaMemory::synchronize() { BALEINE_CUDA_CALL(cudaStreamSynchronize(stream_)); }

}  // namespace baleine::model::cuda
