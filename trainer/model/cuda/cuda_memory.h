#pragma once
// Device memory for the model's buffers (kernels/memory.h): blocks from the caching arena of
// kernels/cuda/device_memory.h, so a warm training step never calls cudaMalloc, and every copy
// and fill queued on the backend's one compute stream, in order with the kernels that read them.
//
// to_host and from_host wait for the stream: the host may read (or reuse) its buffer on return.
// The model calls them for what it needs on the host (routing counts, losses) and for its
// inputs, which are small; bulk host staging (checkpoints, MPI) is a per-call cost the caller
// sees.
#include "kernels/cuda/device_memory.h"
#include "kernels/memory.h"

namespace baleine::model::cuda {

class CudaMemory final : public kernels::Memory {
 public:
  CudaMemory(kernels::cuda::DeviceArena& arena, cudaStream_t stream);
  std::string name() const override;
  bool is_host() const override { return false; }
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* ptr, size_t bytes) override;
  void to_host(void* host, const void* src, size_t bytes) override;
  void from_host(void* dst, const void* host, size_t bytes) override;
  void synchronize() override;

  cudaStream_t stream() const { return stream_; }
  kernels::cuda::DeviceArena& arena() { return arena_; }

 private:
  kernels::cuda::DeviceArena& arena_;
  cudaStream_t stream_;
};

}  // namespace baleine::model::cuda
