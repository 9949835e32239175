#pragma once
// A backend: the memory a model's buffers live in, the operations that run on them
// (model/ops.h) and the optimizer's (model/parameter_ops.h). cpu_backend() always exists;
// cuda_backend() (model/cuda/cuda_backend.h) where the CUDA backend is built and a GPU is
// present.
//
// The current backend is process-wide, as kernels/memory.h explains for memory. A Model takes
// the backend current at its construction and makes it current again for each of its calls
// (BackendScope), so two models on different backends can run in one process.
#include <string>

#include "kernels/memory.h"
#include "trainer/model/ops.h"
#include "trainer/model/parameter_ops.h"

namespace baleine::model {

struct Backend {
  std::string name;             // "cpu", "cuda"
  kernels::Memory* memory = nullptr;
  Ops<float>* f32 = nullptr;
  Ops<double>* f64 = nullptr;   // null where the backend has no double path (CUDA)
  ParameterOps* parameters = nullptr;  // the optimizer's (model/parameter_ops.h)
};

Backend& cpu_backend();
Backend& current_backend();

class BackendScope {
 public:
  explicit BackendScope(Backend& backend);
  ~BackendScope();
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;

 private:
  kernels::MemoryScope memory_;
  Backend* previous_;
};

// The current backend's operations for T. Throws std::logic_error where it has none (double
// on CUDA: gradient checks run on the CPU).
template <typename T>
Ops<T>& ops();

}  // namespace baleine::model
