// SwiGLU gate (Shazeer 2020, "GLU Variants Improve Transformer"): h = silu(a) · b with
// silu(a) = a · σ(a). With s = σ(a): d silu / da = s + a · s · (1 − s), so
//   da = dh · b · s · (1 + a · (1 − s)),   db = dh · a · s.
// σ(a) = 1 / (1 + e^(−a)) stays finite for any a: e^(−a) overflows to inf only when σ → 0.
// vector_exp keeps the loops vectorised (a scalar expf call per element was most of the time).
#include "kernels/swiglu.h"

#include "kernels/cpu/parallel_grain.h"
#include "kernels/cpu/vector_exp.h"

namespace baleine::kernels {

template <typename T>
void swiglu_forward(const T* a, const T* b, T* h, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T s = T(1) / (T(1) + vector_exp(-a[i]));
    h[i] = a[i] * s * b[i];
  }
}

template <typename T>
void swiglu_backward(const T* dh, const T* a, const T* b, T* da, T* db, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    // Read everything before writing, so da or db may alias dh.
    const T ai = a[i], bi = b[i], g = dh[i];
    const T s = T(1) / (T(1) + vector_exp(-ai));
    da[i] = g * bi * s * (T(1) + ai * (T(1) - s));
    db[i] = g * ai * s;
  }
}

template void swiglu_forward<float>(const float*, const float*, float*, int64_t);
template void swiglu_forward<double>(const double*, const double*, double*, int64_t);
template void swiglu_backward<float>(const float*, const float*, const float*, float*, float*,
                                     int64_t);
template void swiglu_backward<double>(const double*, const double*, const double*, double*,
                                      double*, int64_t);

}  // namespace baleine::kernels
