#pragma once
// Where a model's buffers live: host memory for the CPU backend, device memory for the CUDA
// one. Array<T> (kernels/array.h) allocates through a Memory, and every copy that crosses
// between host and the model's memory goes through it, so a layer's code is the same on both.
//
// The current memory is process-wide, like CUDA's current device: a process trains one model on
// one device, and OpenMP workers (which run experts) must see the same memory as the thread that
// started them, so it is not thread-local. MemoryScope switches it for a stretch of code (a test
// that runs a CPU and a GPU model side by side); an Array keeps the memory it was first
// allocated in.
#include <cstddef>
#include <string>

namespace baleine::kernels {

class Memory {
 public:
  virtual ~Memory() = default;
  virtual std::string name() const = 0;  // "host", "cuda:0"
  virtual bool is_host() const = 0;
  // bytes == 0 may give nullptr. Throws std::runtime_error (naming the size) when out of memory.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) = 0;
  // Within this memory.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* ptr, size_t bytes) = 0;
  // Between this memory and ordinary host memory; both return once `host` may be reused or read.
  virtual void to_host(void* host, const void* src, size_t bytes) = 0;
  virtual void from_host(void* dst, const void* host, size_t bytes) = 0;
  // Returns once every copy, fill and kernel queued on this memory so far has finished, for a
  // library that reads it from elsewhere (NCCL on its own stream). Host memory: nothing queued.
  virtual void synchronize() {}
};

Memory& host_memory();
Memory& current_memory();  // host_memory() unless a MemoryScope says otherwise

class MemoryScope {
 public:
  explicit MemoryScope(Memory& memory);
  ~MemoryScope();
  MemoryScope(const MemoryScope&) = delete;
  MemoryScope& operator=(const MemoryScope&) = delete;

 private:
  Memory* previous_;
};

}  // namespace baleine::kernels
