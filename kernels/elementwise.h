#pragma once
// Elementwise passes the model needs between its larger kernels (residual sums, adding a
// shared expert's output). Parallel above kParallelGrain elements; out may alias a or b.
#include <cstdint>

namespace baleine::kernels {

// out[i] = a[i] + b[i]
template <typename T>
void add(const T* a, const T* b, T* out, int64_t n);

// x[i] = x[i] · s (averaging summed gradients over data-parallel ranks).
void scale(float* x, float s, int64_t n);

}  // namespace baleine::kernels
