#include "kernels/elementwise.h"

#include "kernels/cpu/parallel_grain.h"

namespace baleine::kernels {

template <typename T>
void add(const T* a, const T* b, T* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template void add<float>(const float*, const float*, float*, int64_t);
template void add<double>(const double*, const double*, double*, int64_t);

void scale(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace baleine::kernels
