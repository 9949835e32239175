#pragma once
// Scratch memory for kernels, kept per thread and per use between calls: a buffer only grows,
// so once a run's shapes have been seen the step loop allocates nothing (an arena that the
// shapes size). Tag is any type naming the use, so two scratch buffers of one kernel, or of
// two kernels that call each other, never share storage.
#include <cstddef>
#include <vector>

namespace baleine::kernels {

// At least n elements, valid until this thread asks for the same Tag again. Contents are
// whatever the last use left.
template <typename Tag, typename T>
T* thread_scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace baleine::kernels
