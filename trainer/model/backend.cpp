#include "trainer/model/backend.h"

#include <stdexcept>

#include "trainer/model/cpu_ops.h"

namespace baleine::model {

namespace {

Backend*& current() {
  static Backend* backend = &cpu_backend();
  return backend;
}

}  // namespace

Backend& cpu_backend() {
  static CpuOps<float> f32;
  static CpuOps<double> f64;
  static CpuParameterOps parameters;
  static Backend backend{"cpu", &kernels::host_memory(), &f32, &f64, &parameters};
  return backend;
}

Backend& current_backend() { return *current(); }

BackendScope::BackendScope(Backend& backend) : memory_(*backend.memory), previous_(current()) {
  current() = &backend;
}

BackendScope::~BackendScope() { current() = previous_; }

template <>
Ops<float>& ops<float>() {
  return *current_backend().f32;
}

template <>
Ops<double>& ops<double>() {
  Ops<double>* o = current_backend().f64;
  if (o == nullptr) {
    throw std::logic_error("the " + current_backend().name +
                           " backend has no double-precision path (gradient checks run on cpu)");
  }
  return *o;
}

}  // namespace baleine::model
