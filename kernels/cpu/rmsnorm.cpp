// RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"):
//   y = x · r · w,  r = 1 / sqrt(mean(x²) + eps)   per row of `dim`.
// Backward, with g = dy ⊙ w and dim = n:
//   dx = r · g − x · r³ · (g · x) / n          (d r / d x = −r³ x / n)
//   dw += Σ_rows dy ⊙ x · r
// Row reductions accumulate in double: cheap next to the GEMMs, and it keeps the float path
// close to the double reference for wide rows. Rows are independent and each is done by one
// thread, and dweight's columns are summed over rows in order, so nothing depends on the
// thread count.
#include "kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel_grain.h"

namespace baleine::kernels {
namespace {

// Normalises one row that is already in place (h), writing y and the row's rstd.
template <typename T>
void normalize_row(const T* h, const T* weight, T* y, T* rstd, int64_t dim, T eps) {
  double sum_sq = 0;
#pragma omp simd reduction(+ : sum_sq)
  for (int64_t c = 0; c < dim; ++c) sum_sq += double(h[c]) * double(h[c]);
  const T inv = T(1.0 / std::sqrt(sum_sq / double(dim) + double(eps)));
  *rstd = inv;
#pragma omp simd
  for (int64_t c = 0; c < dim; ++c) y[c] = h[c] * inv * weight[c];
}

}  // namespace

template <typename T>
void rmsnorm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t dim,
                     T eps) {
#pragma omp parallel for schedule(static) if (rows * dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    normalize_row(x + r * dim, weight, y + r * dim, rstd + r, dim, eps);
  }
}

template <typename T>
void residual_rmsnorm_forward(const T* x, const T* branch, T* h, const T* weight, T* y, T* rstd,
                              int64_t rows, int64_t dim, T eps) {
#pragma omp parallel for schedule(static) if (rows * dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    T* hr = h + r * dim;
    const T* xr = x + r * dim;
    const T* br = branch + r * dim;
#pragma omp simd
    for (int64_t c = 0; c < dim; ++c) hr[c] = xr[c] + br[c];
    normalize_row(hr, weight, y + r * dim, rstd + r, dim, eps);
  }
}

template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx,
                      T* dweight, int64_t rows, int64_t dim, const T* residual) {
  const bool big = rows * dim > kParallelGrain;
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
#pragma omp simd reduction(+ : g_dot_x)
    for (int64_t c = 0; c < dim; ++c) g_dot_x += double(dyr[c]) * double(weight[c]) * double(xr[c]);
    const T inv = rstd[r];
    const T coeff = T(double(inv) * double(inv) * double(inv) * g_dot_x / double(dim));
    T* dxr = dx + r * dim;
    if (residual == nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < dim; ++c) dxr[c] = inv * dyr[c] * weight[c] - coeff * xr[c];
    } else {
      const T* rr = residual + r * dim;
#pragma omp simd
      for (int64_t c = 0; c < dim; ++c) dxr[c] = (inv * dyr[c] * weight[c] - coeff * xr[c]) + rr[c];
    }
  }
}

#define BALEINE_INSTANTIATE_RMSNORM(T)                                                          \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, T);           \
  template void residual_rmsnorm_forward<T>(const T*, const T*, T*, const T*, T*, T*, int64_t, \
                                            int64_t, T);                                       \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,    \
                                    int64_t, const T*);
BALEINE_INSTANTIATE_RMSNORM(float)
BALEINE_INSTANTIATE_RMSNORM(double)
#undef BALEINE_INSTANTIATE_RMSNORM

}  // namespace baleine::kernels
