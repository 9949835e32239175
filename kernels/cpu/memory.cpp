#include "kernels/memory.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace baleine::kernels {

namespace {

class HostMemory final : public Memory {
 public:
  std::string name() const override { return "host"; }
  bool is_host() const override { return true; }
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    // 64-byte alignment: a cache line, and what the CPU GEMM's vector loads like.
    void* p = ::operator new(bytes, std::align_val_t{64}, std::nothrow);
    if (p == nullptr) {
      throw std::runtime_error("out of host memory allocating " + std::to_string(bytes) +
                               " bytes");
    }
    return p;
  }
  void release(void* ptr, size_t) override {
    if (ptr != nullptr) ::operator delete(ptr, std::align_val_t{64});
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes != 0 && dst != src) std::memmove(dst, src, bytes);
  }
  void zero(void* ptr, size_t bytes) override {
    if (bytes != 0) std::memset(ptr, 0, bytes);
  }
  void to_host(void* host, const void* src, size_t bytes) override { copy(host, src, bytes); }
  void from_host(void* dst, const void* host, size_t bytes) override { copy(dst, host, bytes); }
};

Memory*& current() {
  static Memory* memory = &host_memory();
  return memory;
}

}  // namespace

Memory& host_memory() {
  static HostMemory memory;
  return memory;
}

Memory& current_memory() { return *current(); }

MemoryScope::MemoryScope(Memory& memory) : previous_(current()) { current() = &memory; }

MemoryScope::~MemoryScope() { current() = previous_; }

}  // namespace baleine::kernels
