#pragma once
// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x²) + eps) · weight, per row of `dim`.
#include <cstdint>

namespace baleine::kernels {

// rstd[r] = 1/sqrt(mean(x[r]²) + eps) is saved for the backward.
template <typename T>
void rmsnorm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t dim,
                     T eps);
// dx overwritten (it may alias dy); dweight accumulated.
template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx,
                      T* dweight, int64_t rows, int64_t dim);

}  // namespace baleine::kernels
