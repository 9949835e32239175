#pragma once
// Device memory for the CUDA backend: a stream-ordered caching arena, so the step loop never
// calls cudaMalloc/cudaFree (both synchronize the device), plus RAII owners for device buffers,
// pinned host buffers (staging for host <-> device copies), streams and events.
//
// The arena's rule for reuse (the one PyTorch's caching allocator follows too): a block released
// on stream S may be handed out again at once to work on S, because S runs in order and the
// block's last use is enqueued before the new one. Handing it to another stream needs the work
// enqueued before the release to have finished, which an event recorded at the release tells.
// Blocks are not split: sizes are rounded (512 B below 1 MiB, whole MiB above) and a cached
// block is reused for a request of at least half its size, so a training step that asks for the
// same sizes every time reaches a steady state after its first step with no device allocation
// at all (stats().device_allocations stops growing, which the tests check).
//
// Out of memory: the arena frees its cached blocks and tries once more; then it throws
// std::runtime_error saying what was asked, what it holds and what is in use.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/cuda/stream.h"

struct CUevent_st;
using cudaEvent_t = CUevent_st*;

namespace baleine::kernels::cuda {

struct ArenaStats {
  int64_t device_allocations = 0;  // cudaMalloc calls so far
  int64_t reused = 0;              // requests served from the cache
  int64_t bytes_reserved = 0;      // held from the driver (in use + cached)
  int64_t bytes_in_use = 0;
  int64_t peak_bytes_in_use = 0;
};

class DeviceArena {
 public:
  // Allocates on the device current at construction; every call must run with that device
  // current (checked).
  DeviceArena();
  ~DeviceArena();  // frees every block; blocks still handed out are reported on stderr
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // At least `bytes` (256-byte aligned) for work on `stream`. bytes == 0 gives nullptr.
  void* allocate(size_t bytes, cudaStream_t stream);
  // Returns a block from allocate(); `stream` is the last stream that used it.
  void release(void* ptr, cudaStream_t stream);
  // Gives every cached (free) block back to the driver; waits for the device first.
  void trim();

  ArenaStats stats() const;
  int device() const { return device_; }
  // The size a request of `bytes` is rounded to (exposed for the tests).
  static size_t rounded_size(size_t bytes);

 private:
  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
    cudaStream_t stream = nullptr;  // the stream that last used it
    cudaEvent_t released = nullptr; // recorded on `stream` at release (cross-stream reuse)
  };
  void* take_cached(size_t bytes, cudaStream_t stream);
  void free_cached();

  int device_ = 0;
  mutable std::mutex mutex_;
  std::multimap<size_t, Block> free_;          // by size
  std::map<void*, Block> in_use_;              // by address
  std::vector<cudaEvent_t> spare_events_;
  ArenaStats stats_;
};

// An array of `count` T in arena memory, released (on its stream) when it goes out of scope.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceArena& arena, int64_t count, cudaStream_t stream)
      : arena_(&arena),
        stream_(stream),
        count_(count),
        data_(static_cast<T*>(arena.allocate(sizeof(T) * static_cast<size_t>(count), stream))) {}
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      std::swap(arena_, other.arena_);
      std::swap(stream_, other.stream_);
      std::swap(count_, other.count_);
      std::swap(data_, other.data_);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  void reset() {
    if (data_ != nullptr) arena_->release(data_, stream_);
    data_ = nullptr;
    count_ = 0;
  }
  // Later work on another stream: the block is released on that one.
  void set_stream(cudaStream_t stream) { stream_ = stream; }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return count_; }
  size_t bytes() const { return sizeof(T) * static_cast<size_t>(count_); }

 private:
  DeviceArena* arena_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int64_t count_ = 0;
  T* data_ = nullptr;
};

// Page-locked host memory: copies from and to it run asynchronously and at full bus speed.
class PinnedBytes {
 public:
  PinnedBytes() = default;
  explicit PinnedBytes(size_t bytes);
  PinnedBytes(PinnedBytes&& other) noexcept { *this = std::move(other); }
  PinnedBytes& operator=(PinnedBytes&& other) noexcept {  // other frees what this held
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;
  ~PinnedBytes();

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking stream (no implicit synchronization with the legacy default stream).
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// An event without timing, for ordering work between streams: record on the producer, wait on
// the consumer (the host never blocks).
class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream);
  void make_wait(cudaStream_t stream) const;  // stream waits for the last record()
  bool done() const;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Host <-> device copies on a stream (asynchronous for pinned host memory).
void copy_to_device(void* device, const void* host, size_t bytes, cudaStream_t stream);
void copy_to_host(void* host, const void* device, size_t bytes, cudaStream_t stream);
void copy_on_device(void* to, const void* from, size_t bytes, cudaStream_t stream);
void fill_zero(void* device, size_t bytes, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
