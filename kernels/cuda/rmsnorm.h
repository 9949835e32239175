#pragma once
// CUDA twin of kernels/rmsnorm.h: RMSNorm y = x / sqrt(mean(x²) + eps) · weight per row of dim,
// its fused pre-norm residual form, and the backward. Device pointers, FP32; work is enqueued
// on `stream`; rows == 0 or dim == 0 enqueues nothing. Aliasing as kernels/rmsnorm.h.
//
// Determinism: every output is the same bits run after run. dweight is summed without atomics:
// the backward's blocks each own a fixed set of rows and accumulate their share of dweight in
// a row of `workspace`, then a second kernel adds those rows up in a fixed order. The number
// of partial rows depends on `rows` alone, so the bits do not depend on the GPU either.
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// rstd[r] = 1/sqrt(mean(x[r]²) + eps), saved for the backward.
void rmsnorm_forward(const float* x, const float* weight, float* y, float* rstd, int64_t rows,
                     int64_t dim, float eps, cudaStream_t stream);
// h = x + branch (h may alias x or branch), then y = RMSNorm(h).
void residual_rmsnorm_forward(const float* x, const float* branch, float* h,
                              const float* weight, float* y, float* rstd, int64_t rows,
                              int64_t dim, float eps, cudaStream_t stream);

// Floats of device scratch rmsnorm_backward needs for this shape (its dweight partial sums).
int64_t rmsnorm_backward_workspace_floats(int64_t rows, int64_t dim);
// dx overwritten (it may alias dy); dweight accumulated (+=). `residual` may be nullptr;
// otherwise dx = (the norm's input gradient) + residual, and residual must not alias dx.
// `workspace` holds rmsnorm_backward_workspace_floats(rows, dim) floats, contents ignored.
void rmsnorm_backward(const float* dy, const float* x, const float* weight, const float* rstd,
                      float* dx, float* dweight, int64_t rows, int64_t dim,
                      const float* residual, float* workspace, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
