// The caching arena and RAII owners of kernels/cuda/device_memory.h.
#include "kernels/cuda/device_memory.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"

namespace baleine::kernels::cuda {
namespace {

constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t(1) << 20;

std::string mib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

int current_device() {
  int device = 0;
  BALEINE_CUDA_CALL(cudaGetDevice(&device));
  return device;
}

void copy(void* to, const void* from, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (bytes > 0) BALEINE_CUDA_CALL(cudaMemcpyAsync(to, from, bytes, kind, stream));
}

}  // namespace

size_t DeviceArena::rounded_size(size_t bytes) {
  const size_t granule = bytes < kLargeGranule ? kSmallGranule : kLargeGranule;
  return (bytes + granule - 1) / granule * granule;
}

DeviceArena::DeviceArena() : device_(current_device()) {}

DeviceArena::~DeviceArena() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!in_use_.empty())
    std::fprintf(stderr, "baleine: warning: %zu device buffers (%s) still in use when their arena "
                 "was destroyed; freeing them\n", in_use_.size(), mib(stats_.bytes_in_use).c_str());
  BALEINE_CUDA_CALL_WARN(cudaDeviceSynchronize());
  for (auto& [ptr, block] : in_use_) BALEINE_CUDA_CALL_WARN(cudaFree(ptr));
  for (auto& [bytes, block] : free_) {
    BALEINE_CUDA_CALL_WARN(cudaFree(block.ptr));
    if (block.released != nullptr) BALEINE_CUDA_CALL_WARN(cudaEventDestroy(block.released));
  }
  for (cudaEvent_t event : spare_events_) BALEINE_CUDA_CALL_WARN(cudaEventDestroy(event));
}

// The smallest cached block that fits, is no more than twice the request, and is safe for
// `stream`: last used on it, or its release event has completed.
void* DeviceArena::take_cached(size_t bytes, cudaStream_t stream) {
  for (auto it = free_.lower_bound(bytes); it != free_.end() && it->first <= 2 * bytes; ++it) {
    Block& block = it->second;
    if (block.stream != stream) {
      const cudaError_t status = cudaEventQuery(block.released);
      if (status == cudaErrorNotReady) continue;
      BALEINE_CUDA_CALL(status);
    }
    Block taken = block;
    free_.erase(it);
    if (taken.released != nullptr) spare_events_.push_back(taken.released);
    taken.released = nullptr;
    taken.stream = stream;
    in_use_.emplace(taken.ptr, taken);
    return taken.ptr;
  }
  return nullptr;
}

void DeviceArena::free_cached() {
  BALEINE_CUDA_CALL(cudaDeviceSynchronize());
  for (auto& [bytes, block] : free_) {
    BALEINE_CUDA_CALL(cudaFree(block.ptr));
    if (block.released != nullptr) spare_events_.push_back(block.released);
    stats_.bytes_reserved -= static_cast<int64_t>(bytes);
  }
  free_.clear();
}

void* DeviceArena::allocate(size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mutex_);
  if (current_device() != device_)
    throw std::logic_error("DeviceArena: allocation with device " +
                           std::to_string(current_device()) + " current; the arena is device " +
                           std::to_string(device_) + "'s");
  const size_t size = rounded_size(bytes);
  void* ptr = take_cached(size, stream);
  if (ptr != nullptr) {
    stats_.reused += 1;
  } else {
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation && !free_.empty()) {
      cudaGetLastError();  // clear it, then give the cache back and try once more
      free_cached();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error(
          "out of device memory on GPU " + std::to_string(device_) + ": asked for " +
          mib(static_cast<int64_t>(size)) + " with " + mib(stats_.bytes_in_use) + " in use and " +
          mib(stats_.bytes_reserved) + " held (" + cudaGetErrorString(status) +
          "); hint: lower training.micro_batch or the sequence length, or add pipeline stages");
    }
    in_use_.emplace(ptr, Block{ptr, size, stream, nullptr});
    stats_.device_allocations += 1;
    stats_.bytes_reserved += static_cast<int64_t>(size);
  }
  stats_.bytes_in_use += static_cast<int64_t>(size);
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  return ptr;
}

void DeviceArena::release(void* ptr, cudaStream_t stream) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = in_use_.find(ptr);
  if (it == in_use_.end())
    throw std::logic_error("DeviceArena::release of a pointer it did not hand out");
  Block block = it->second;
  in_use_.erase(it);
  block.stream = stream;
  if (spare_events_.empty()) {
    cudaEvent_t event = nullptr;
    BALEINE_CUDA_CALL(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    spare_events_.push_back(event);
  }
  block.released = spare_events_.back();
  spare_events_.pop_back();
  BALEINE_CUDA_CALL(cudaEventRecord(block.released, stream));
  stats_.bytes_in_use -= static_cast<int64_t>(block.bytes);
  free_.emplace(block.bytes, block);
}

void DeviceArena::trim() {
  std::lock_guard<std::mutex> lock(mutex_);
  free_cached();
}

ArenaStats DeviceArena::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

PinnedBytes::PinnedBytes(size_t bytes) : bytes_(bytes) {
  if (bytes > 0) BALEINE_CUDA_CALL(cudaMallocHost(&ptr_, bytes));
}

PinnedBytes::~PinnedBytes() {
  if (ptr_ != nullptr) BALEINE_CUDA_CALL_WARN(cudaFreeHost(ptr_));
}

Stream::Stream() { BALEINE_CUDA_CALL(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
Stream::~Stream() { BALEINE_CUDA_CALL_WARN(cudaStreamDestroy(stream_)); }
void Stream::synchronize() const { BALEINE_CUDA_CALL(cudaStreamSynchronize(stream_)); }

Event::Event() { BALEINE_CUDA_CALL(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
Event::~Event() { BALEINE_CUDA_CALL_WARN(cudaEventDestroy(event_)); }
void Event::record(cudaStream_t stream) { BALEINE_CUDA_CALL(cudaEventRecord(event_, stream)); }
void Event::make_wait(cudaStream_t stream) const {
  BALEINE_CUDA_CALL(cudaStreamWaitEvent(stream, event_, 0));
}
bool Event::done() const {
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) return false;
  BALEINE_CUDA_CALL(status);
  return true;
}

void copy_to_device(void* device, const void* host, size_t bytes, cudaStream_t stream) {
  copy(device, host, bytes, cudaMemcpyHostToDevice, stream);
}
void copy_to_host(void* host, const void* device, size_t bytes, cudaStream_t stream) {
  copy(host, device, bytes, cudaMemcpyDeviceToHost, stream);
}
void copy_on_device(void* to, const void* from, size_t bytes, cudaStream_t stream) {
  copy(to, from, bytes, cudaMemcpyDeviceToDevice, stream);
}
void fill_zero(void* device, size_t bytes, cudaStream_t stream) {
  if (bytes > 0) BALEINE_CUDA_CALL(cudaMemsetAsync(device, 0, bytes, stream));
}

}  // namespace baleine::kernels::cuda
