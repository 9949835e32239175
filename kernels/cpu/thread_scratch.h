#pragma once
// Scratch memory for kernels, kept per thread and per use between calls: a buffer only grows,
// so once a run's shapes have been seen the step loop allocates nothing (an arena that the
// shapes size). Tag is any type naming the use, so two kernels, or two kernels that call each
// other, never share storage; a use that needs several buffers at once asks for kSlots of
// them and picks one by index.
#include <cstddef>
#include <vector>

namespace baleine::kernels {

// This thread's buffers for Tag.
template <typename Tag, typename T, int kSlots = 1>
std::vector<T>& thread_buffer(int slot = 0) {
  thread_local std::vector<T> buffers[kSlots];
  return buffers[slot];
}

// At least n elements, valid until this thread asks for the same Tag and slot again. Contents
// are whatever the last use left.
template <typename Tag, typename T, int kSlots = 1>
T* thread_scratch(size_t n, int slot = 0) {
  std::vector<T>& buffer = thread_buffer<Tag, T, kSlots>(slot);
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// The same storage as a vector of exactly n elements (its capacity is kept, so it allocates
// only when n exceeds every earlier n), for code that takes a std::vector.
template <typename Tag, typename T>
std::vector<T>& thread_vector(size_t n) {
  std::vector<T>& buffer = thread_buffer<Tag, T>();
  buffer.resize(n);
  return buffer;
}

}  // namespace baleine::kernels
