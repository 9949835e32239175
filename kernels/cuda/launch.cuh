#pragma once
// Shared device-side helpers for the kernels of kernels/cuda (included by .cu files only):
// grid sizes and warp / block reductions.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace baleine::kernels::cuda {

constexpr int kWarp = 32;

// Blocks of `threads` covering `items`, capped so the grid stays within what every GPU since
// sm_75 launches in one dimension; kernels loop with a grid stride over the rest.
inline unsigned blocks_for(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

__device__ inline float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The sum of v over the whole block (blockDim.x a multiple of 32, at most 1024), returned to
// every thread. `scratch` is __shared__ float[32]; the call ends with a barrier so scratch can be
// reused right away.
__device__ inline float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}

__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  v = warp_max(v);
  __syncthreads();
  return v;
}

}  // namespace baleine::kernels::cuda
