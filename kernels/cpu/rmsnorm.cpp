// RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"):
//   y = x · r · w,  r = 1 / sqrt(mean(x²) + eps)   per row of `dim`.
// Backward, with g = dy ⊙ w and dim = n:
//   dx = r · g − x · r³ · (g · x) / n          (d r / d x = −r³ x / n)
//   dw += Σ_rows dy ⊙ x · r
// Row reductions accumulate in double: cheap next to the GEMMs, and it keeps the float path
// close to the double reference for wide rows.
#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace baleine::kernels {

template <typename T>
void rmsnorm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t dim,
                     T eps) {
#pragma omp parallel for schedule(static) if (rows * dim > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    double sum_sq = 0;
    for (int64_t c = 0; c < dim; ++c) sum_sq += double(xr[c]) * double(xr[c]);
    const T inv = T(1.0 / std::sqrt(sum_sq / double(dim) + double(eps)));
    rstd[r] = inv;
    T* yr = y + r * dim;
    for (int64_t c = 0; c < dim; ++c) yr[c] = xr[c] * inv * weight[c];
  }
}

template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx,
                      T* dweight, int64_t rows, int64_t dim) {
  const bool big = rows * dim > (1 << 15);
  // dweight first (it reads dy, so dx may alias dy): threads own column slices and sum the
  // rows in order, so the result does not depend on the thread count.
  constexpr int64_t kSlice = 16;
  const int64_t slices = (dim + kSlice - 1) / kSlice;
#pragma omp parallel for schedule(static) if (big)
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t c0 = s * kSlice, c1 = std::min(dim, c0 + kSlice);
    double acc[kSlice] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * dim;
      const T* dyr = dy + r * dim;
      const double inv = double(rstd[r]);
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += double(dyr[c]) * double(xr[c]) * inv;
    }
    for (int64_t c = c0; c < c1; ++c) dweight[c] += T(acc[c - c0]);
  }
#pragma omp parallel for schedule(static) if (big)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    double g_dot_x = 0;
    for (int64_t c = 0; c < dim; ++c) g_dot_x += double(dyr[c]) * double(weight[c]) * double(xr[c]);
    const T inv = rstd[r];
    const T coeff = T(double(inv) * double(inv) * double(inv) * g_dot_x / double(dim));
    T* dxr = dx + r * dim;
    for (int64_t c = 0; c < dim; ++c) dxr[c] = inv * dyr[c] * weight[c] - coeff * xr[c];
  }
}

template void rmsnorm_forward<float>(const float*, const float*, float*, float*, int64_t,
                                     int64_t, float);
template void rmsnorm_forward<double>(const double*, const double*, double*, double*, int64_t,
                                      int64_t, double);
template void rmsnorm_backward<float>(const float*, const float*, const float*, const float*,
                                      float*, float*, int64_t, int64_t);
template void rmsnorm_backward<double>(const double*, const double*, const double*,
                                       const double*, double*, double*, int64_t, int64_t);

}  // namespace baleine::kernels
