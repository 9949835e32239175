#pragma once
// A kernels::Memory that says it is not the host, the way a device memory would, while its
// bytes are host bytes (so CPU code can still read them): tests run the device code paths of
// Array and of the model without a GPU, and count what went through the memory.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "kernels/memory.h"

namespace baleine::testing {

class StandInDeviceMemory final : public kernels::Memory {
 public:
  std::string name() const override { return "stand-in device"; }
  bool is_host() const override { return false; }
  void* allocate(size_t bytes) override {
    ++allocations;
    if (bytes == 0) return nullptr;
    void* p = std::malloc(bytes);
    live[p] = bytes;
    return p;
  }
  void release(void* ptr, size_t bytes) override {
    if (ptr == nullptr) return;
    EXPECT_EQ(live.at(ptr), bytes) << "released with another size than allocated";
    live.erase(ptr);
    std::free(ptr);
  }
  void copy(void* dst, const void* src, size_t bytes) override { std::memmove(dst, src, bytes); }
  void zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
  void to_host(void* host, const void* src, size_t bytes) override {
    ++to_host_calls;
    std::memcpy(host, src, bytes);
  }
  void from_host(void* dst, const void* host, size_t bytes) override {
    ++from_host_calls;
    std::memcpy(dst, host, bytes);
  }
  int transfers() const { return to_host_calls + from_host_calls; }

  int allocations = 0, to_host_calls = 0, from_host_calls = 0;
  std::map<void*, size_t> live;  // blocks handed out and not released, with their sizes
};

}  // namespace baleine::testing
