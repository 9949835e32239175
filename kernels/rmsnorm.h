#pragma once
// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x²) + eps) · weight, per row of `dim`.
#include <cstdint>

namespace baleine::kernels {

// rstd[r] = 1/sqrt(mean(x[r]²) + eps) is saved for the backward.
template <typename T>
void rmsnorm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t dim,
                     T eps);
// The pre-norm residual step in one pass: h = x + branch (h may alias x or branch), then
// y = RMSNorm(h) as above.
template <typename T>
void residual_rmsnorm_forward(const T* x, const T* branch, T* h, const T* weight, T* y, T* rstd,
                              int64_t rows, int64_t dim, T eps);
// dx overwritten (it may alias dy); dweight accumulated. With `residual` (which must not alias
// dx), dx = (the norm's input gradient) + residual: the gradient that also reaches the norm's
// input through the residual stream, added in the same pass.
template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx,
                      T* dweight, int64_t rows, int64_t dim, const T* residual = nullptr);

}  // namespace baleine::kernels
