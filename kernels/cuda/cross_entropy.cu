// Softmax cross-entropy on the GPU (kernels/cuda/cross_entropy.h), the formulas of
// kernels/cpu/cross_entropy.cpp: lse_r = m + log Σ_j exp(logits[r, j] − m) with m the row's
// max (every exponent ≤ 0, nothing overflows), loss_r = lse_r − logits[r, target_r], and the
// backward re-forms softmax = exp(logit − lse) from the saved lse.
//
// One block per row (rows in a grid-stride loop): the block reduces the row's max, then its
// Σ exp in FP64 (one FP64 add per logit, cheap next to reading it), both with a fixed tree, so
// a row's result does not depend on scheduling. The mean is one block summing the FP64 row
// losses in a fixed order. expf, not __expf: the intrinsic loses accuracy for large |x| (and
// the build must not use --use_fast_math, which would swap it in).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;      // per row; a multiple of 32 (block_max, block_sum)
constexpr int kMeanThreads = 512;  // the one block forming the mean
constexpr int64_t kMaxRowBlocks = 65535LL * 8;

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

__global__ void cross_entropy_rows(const float* logits, const int32_t* targets, float* lse,
                                   double* row_loss, int64_t n, int64_t vocab) {
  __shared__ float max_scratch[kWarp];
  __shared__ double sum_scratch[kWarp];
  // r is the same for the whole block, so the barriers inside the reductions are reached by all.
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const float* row = logits + r * vocab;
    float max_logit = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
      max_logit = fmaxf(max_logit, row[j]);
    max_logit = block_max(max_logit, max_scratch);
    double sum = 0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
      sum += double(expf(row[j] - max_logit));
    sum = block_sum(sum, sum_scratch);
    if (threadIdx.x == 0) {
      const double row_lse = double(max_logit) + log(sum);
      lse[r] = float(row_lse);
      const int32_t target = targets[r];
      row_loss[r] = target >= 0 && target < vocab ? row_lse - double(row[target]) : double(NAN);
    }
  }
}

__global__ void mean_of_row_losses(const double* row_loss, int64_t n, double* mean_loss) {
  __shared__ double scratch[kWarp];
  double sum = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) sum += row_loss[r];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) *mean_loss = sum / double(n);
}

__global__ void cross_entropy_backward_rows(const float* logits, const int32_t* targets,
                                            const float* lse, float scale, float* dlogits,
                                            int64_t n, int64_t vocab) {
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const float* row = logits + r * vocab;
    float* grad = dlogits + r * vocab;
    const float row_lse = lse[r];
    const int64_t target = targets[r];
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      // As the CPU: scale · p rounded, then − scale for the target (two roundings, not an FMA).
      float g = __fmul_rn(scale, expf(row[j] - row_lse));
      if (j == target) g = __fsub_rn(g, scale);
      grad[j] = g;
    }
  }
}

}  // namespace

void cross_entropy_forward(const float* logits, const int32_t* targets, float* lse,
                           double* row_loss, double* mean_loss, int64_t n, int64_t vocab,
                           cudaStream_t stream) {
  NvtxRange range("cross_entropy_forward");
  if (n <= 0) {
    // All-zero bytes are +0.0, the CPU's mean of no rows.
    if (mean_loss != nullptr)
      BALEINE_CUDA_CALL(cudaMemsetAsync(mean_loss, 0, sizeof(double), stream));
    return;
  }
  if (vocab < 1) {
    throw std::invalid_argument("cuda::cross_entropy_forward: vocab is " +
                                std::to_string(vocab) + " for " + std::to_string(n) +
                                " rows; a row needs at least one logit");
  }
  cross_entropy_rows<<<row_blocks(n), kThreads, 0, stream>>>(logits, targets, lse, row_loss, n,
                                                              vocab);
  BALEINE_CUDA_LAUNCH_CHECK();
  if (mean_loss != nullptr) {
    mean_of_row_losses<<<1, kMeanThreads, 0, stream>>>(row_loss, n, mean_loss);
    BALEINE_CUDA_LAUNCH_CHECK();
  }
}

void cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                            float scale, float* dlogits, int64_t n, int64_t vocab,
                            cudaStream_t stream) {
  NvtxRange range("cross_entropy_backward");
  if (n <= 0 || vocab <= 0) return;
  cross_entropy_backward_rows<<<row_blocks(n), kThreads, 0, stream>>>(logits, targets, lse,
                                                                       scale, dlogits, n, vocab);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
