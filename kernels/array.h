#pragma once
// A resizable array of trivially copyable T in a Memory (kernels/memory.h): host memory on the
// CPU backend, device memory on the CUDA one. It behaves like the std::vector it replaces in
// the model: resize() keeps the first min(old, new) elements and zeroes the rest (the vector's
// value-initialisation, which some buffers rely on), capacity only grows, and data() stays put
// while a resize fits the capacity. Copies are deep and stay in the same memory.
//
// The memory is chosen at the first allocation (current_memory() then) and kept. Element
// access (operator[], begin/end) is for host arrays only; a device array is read through
// Memory::to_host.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/memory.h"

namespace baleine::kernels {

template <typename T>
class Array {
  static_assert(std::is_trivially_copyable_v<T>, "Array holds plain values");

 public:
  using value_type = T;

  Array() = default;
  explicit Array(size_t n) { resize(n); }
  Array(size_t n, const T& value) { assign(n, value); }
  Array(const Array& other) { *this = other; }
  Array& operator=(const Array& other) {
    if (this != &other) copy_from(other);
    return *this;
  }
  Array(Array&& other) noexcept { swap(other); }
  Array& operator=(Array&& other) noexcept {
    swap(other);
    return *this;
  }
  ~Array() { free(); }

  void swap(Array& other) noexcept {
    std::swap(memory_, other.memory_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  // The memory the elements live in (current_memory() before the first allocation).
  Memory& memory() const { return memory_ ? *memory_ : current_memory(); }
  bool on_host() const { return memory().is_host(); }

  void resize(size_t n) {
    if (n > capacity_) grow(std::max(n, 2 * size_));
    if (n > size_) memory().zero(data_ + size_, (n - size_) * sizeof(T));
    size_ = n;
  }
  void clear() { size_ = 0; }
  // n copies of value (through a host staging copy when the array is not on the host).
  void assign(size_t n, const T& value) {
    resize(n);
    if (n == 0) return;
    if (on_host()) {
      std::fill(data_, data_ + n, value);
      return;
    }
    const T zero{};
    if (std::memcmp(&value, &zero, sizeof(T)) == 0) {  // a fill, no transfer
      memory().zero(data_, n * sizeof(T));
      return;
    }
    const std::vector<T> staged(n, value);
    memory().from_host(data_, staged.data(), n * sizeof(T));
  }
  // The n values at `src`, which live in this array's memory.
  void assign_from(const T* src, size_t n) {
    resize(n);
    memory().copy(data_, src, n * sizeof(T));
  }
  // The n values at `host`, ordinary host memory.
  void assign_from_host(const T* host, size_t n) {
    resize(n);
    memory().from_host(data_, host, n * sizeof(T));
  }
  // A host copy of the elements.
  std::vector<T> to_host() const {
    std::vector<T> out(size_);
    if (size_ != 0) memory().to_host(out.data(), data_, size_ * sizeof(T));
    return out;
  }

  // Host arrays only.
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }

 private:
  void grow(size_t capacity) {
    Memory& m = memory();
    T* bigger = static_cast<T*>(m.allocate(capacity * sizeof(T)));
    if (size_ != 0) m.copy(bigger, data_, size_ * sizeof(T));
    m.release(data_, capacity_ * sizeof(T));
    memory_ = &m;
    data_ = bigger;
    capacity_ = capacity;
  }
  void copy_from(const Array& other) {
    if (memory_ == nullptr) memory_ = &other.memory();
    if (memory_ != &other.memory()) {
      throw std::logic_error("Array: copying between " + memory_->name() + " and " +
                             other.memory().name() + " memory needs an explicit transfer");
    }
    resize(0);
    if (other.size_ > capacity_) grow(other.size_);
    size_ = other.size_;
    memory_->copy(data_, other.data_, size_ * sizeof(T));
  }
  void free() {
    if (data_ != nullptr) memory_->release(data_, capacity_ * sizeof(T));
    data_ = nullptr;
    size_ = capacity_ = 0;
  }

  Memory* memory_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

template <typename T>
bool operator==(const Array<T>& a, const Array<T>& b) {  // host arrays
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

template <typename T>
bool operator!=(const Array<T>& a, const Array<T>& b) {
  return !(a == b);
}

}  // namespace baleine::kernels
