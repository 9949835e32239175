// RMSNorm (kernels/cuda/rmsnorm.h), the formulas of kernels/cpu/rmsnorm.cpp:
//   y = x · r · w,  r = 1 / sqrt(mean(x²) + eps)
//   dx = r · g − x · r³ · (g · x) / n,  g = dy ⊙ w      dw += Σ_rows dy ⊙ x · r
//
// One block per row, about 8 elements per thread, two passes over the row: the first sums
// (x² forward, g·x backward), the second writes. The second pass rereads the row, which a block
// just read, from L1/L2 rather than holding it in registers, so any dim works with one kernel.
// Row sums accumulate in float per thread and then in a fixed tree (block_sum): pairwise-like,
// so the relative error stays ~log2(dim)·2⁻²⁴, where the CPU sums in double; the few per-row
// scalars (r, r³·(g·x)/n) are computed in double as on the CPU.
//
// dweight, deterministically: the backward runs kPartialRows blocks (fewer for fewer rows);
// block b handles rows b, b + blocks, ... in order and keeps its running sum of dy ⊙ x · r in
// row b of the workspace (each thread only its own columns, so no barrier is needed; the row is
// hot in L2). A second kernel adds the partial rows for each column in a fixed order, in double,
// and adds the total to dweight. Block b reads and writes only its own workspace row, so the
// rows need no initialization: each block's first row stores instead of adding.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"
#include "kernels/cuda/rmsnorm.h"

namespace baleine::kernels::cuda {
namespace {

// Partial dweight rows: enough blocks to fill an H100/H200 several times over with the
// per-row work, while the workspace stays small next to the activations (512 · dim floats).
constexpr int64_t kPartialRows = 512;

int64_t partial_rows(int64_t rows) { return rows < kPartialRows ? rows : kPartialRows; }

// About 8 elements per thread, a warp multiple between 32 and kMaxRowThreads (dim 2048 -> 256
// threads, dim 8192 -> 1024).
constexpr int kMaxRowThreads = 1024;
int row_threads(int64_t dim) {
  const int64_t per_thread = 8, max_warps = kMaxRowThreads / kWarp;
  const int64_t warps = ((dim + per_thread - 1) / per_thread + kWarp - 1) / kWarp;
  return static_cast<int>(kWarp * (warps < 1 ? 1 : (warps > max_warps ? max_warps : warps)));
}

// 1 / sqrt(sum_sq / dim + eps), rounded once from double as the CPU does.
__device__ __forceinline__ float inverse_rms(float sum_sq, int64_t dim, float eps) {
  return static_cast<float>(1.0 / sqrt(double(sum_sq) / double(dim) + double(eps)));
}

// kResidual: h = x + branch first (h may alias either), and the row normalized is h.
template <bool kResidual>
__global__ void __launch_bounds__(kMaxRowThreads)
    rmsnorm_forward_kernel(const float* x, const float* branch, float* h, const float* weight,
                           float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  __shared__ float scratch[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // The row to normalize; with a residual it is h, written below by the same thread that
    // rereads each element in the second pass.
    const float* in = xr;
    float sum_sq = 0.0f;
    if (kResidual) {
      const float* br = branch + r * dim;
      float* hr = h + r * dim;
      for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
        const float v = xr[c] + br[c];
        hr[c] = v;
        sum_sq += v * v;
      }
      in = hr;
    } else {
      for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) sum_sq += xr[c] * xr[c];
    }
    sum_sq = block_sum(sum_sq, scratch);
    const float inv = inverse_rms(sum_sq, dim, eps);
    if (threadIdx.x == 0) rstd[r] = inv;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) yr[c] = in[c] * inv * weight[c];
  }
}

// Grid: exactly partial_rows(rows) blocks (block b owns workspace row b).
__global__ void __launch_bounds__(kMaxRowThreads)
    rmsnorm_backward_rows_kernel(const float* dy, const float* x, const float* weight,
                                 const float* rstd, const float* residual, float* dx,
                                 float* partial, int64_t rows, int64_t dim) {
  __shared__ float scratch[kWarp];
  float* dweight_partial = partial + int64_t(blockIdx.x) * dim;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const bool first_row = r == blockIdx.x;
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    const float inv = rstd[r];
    // Pass 1 reads dy only, so dx may alias dy.
    float g_dot_x = 0.0f;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
      const float g = dyr[c], xv = xr[c];
      g_dot_x += g * weight[c] * xv;
      const float contribution = g * xv * inv;
      dweight_partial[c] = first_row ? contribution : dweight_partial[c] + contribution;
    }
    g_dot_x = block_sum(g_dot_x, scratch);
    const float coeff = static_cast<float>(double(inv) * double(inv) * double(inv) *
                                           double(g_dot_x) / double(dim));
    // Pass 2: each thread reads dy[c] before writing dx[c] (the same element, same thread).
    float* dxr = dx + r * dim;
    if (residual == nullptr) {
      for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
        dxr[c] = inv * dyr[c] * weight[c] - coeff * xr[c];
    } else {
      const float* rr = residual + r * dim;
      for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
        dxr[c] = (inv * dyr[c] * weight[c] - coeff * xr[c]) + rr[c];
    }
  }
}

// dweight[c] += Σ_p partial[p][c], summed in a fixed order: lane y of a (32 × kSumLanes) block
// adds parts y, y + kSumLanes, ... in double, then lane 0 adds the lanes' sums in lane order.
constexpr int kSumLanes = 8;
__global__ void sum_partials_kernel(const float* partial, float* dweight, int64_t parts,
                                    int64_t dim) {
  __shared__ double lane_sums[kSumLanes][kWarp];
  const int64_t tiles = (dim + kWarp - 1) / kWarp;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t c = tile * kWarp + threadIdx.x;
    double sum = 0.0;
    if (c < dim)
      for (int64_t p = threadIdx.y; p < parts; p += kSumLanes) sum += partial[p * dim + c];
    lane_sums[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < dim) {
      double total = 0.0;
      for (int lane = 0; lane < kSumLanes; ++lane) total += lane_sums[lane][threadIdx.x];
      dweight[c] += static_cast<float>(total);
    }
    __syncthreads();  // lane_sums is rewritten by the next tile
  }
}

}  // namespace

void rmsnorm_forward(const float* x, const float* weight, float* y, float* rstd, int64_t rows,
                     int64_t dim, float eps, cudaStream_t stream) {
  NvtxRange range("rmsnorm_forward");
  if (rows <= 0 || dim <= 0) return;
  rmsnorm_forward_kernel<false><<<blocks_for(rows, 1), row_threads(dim), 0, stream>>>(
      x, nullptr, nullptr, weight, y, rstd, rows, dim, eps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void residual_rmsnorm_forward(const float* x, const float* branch, float* h,
                              const float* weight, float* y, float* rstd, int64_t rows,
                              int64_t dim, float eps, cudaStream_t stream) {
  NvtxRange range("residual_rmsnorm_forward");
  if (rows <= 0 || dim <= 0) return;
  rmsnorm_forward_kernel<true><<<blocks_for(rows, 1), row_threads(dim), 0, stream>>>(
      x, branch, h, weight, y, rstd, rows, dim, eps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

int64_t rmsnorm_backward_workspace_floats(int64_t rows, int64_t dim) {
  if (rows <= 0 || dim <= 0) return 0;
  return partial_rows(rows) * dim;
}

void rmsnorm_backward(const float* dy, const float* x, const float* weight, const float* rstd,
                      float* dx, float* dweight, int64_t rows, int64_t dim,
                      const float* residual, float* workspace, cudaStream_t stream) {
  NvtxRange range("rmsnorm_backward");
  if (rows <= 0 || dim <= 0) return;
  const int64_t parts = partial_rows(rows);
  rmsnorm_backward_rows_kernel<<<static_cast<unsigned>(parts), row_threads(dim), 0, stream>>>(
      dy, x, weight, rstd, residual, dx, workspace, rows, dim);
  BALEINE_CUDA_LAUNCH_CHECK();
  const int64_t tiles = (dim + kWarp - 1) / kWarp;
  sum_partials_kernel<<<blocks_for(tiles, 1), dim3(kWarp, kSumLanes), 0, stream>>>(
      workspace, dweight, parts, dim);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
