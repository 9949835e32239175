#pragma once
// Shared device-side helpers for the kernels of kernels/cuda (included by .cu files only):
// grid sizes and warp / block reductions.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace baleine::kernels::cuda {

constexpr int kWarp = 32;

// Blocks of `threads` covering `items`, capped so the grid stays within what every GPU since
// sm_75 launches in one dimension; kernels loop with a grid stride over the rest.
inline unsigned blocks_for(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535LL * 8)));
}

// The reduction ops of the helpers below. Sums and maxima are exact at every step whatever
// the operand order (a + b == b + a, max is exact), so the butterfly's partners agree.
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ int32_t operator()(int32_t a, int32_t b) const { return max(a, b); }
};

// `op` over each aligned group of kSpan lanes (a power of two <= 32), the result in every lane
// of the group. Every lane of the warp must call it.
template <int kSpan = kWarp, typename T, typename Op>
__device__ inline T lanes_reduce(T v, Op op) {
#pragma unroll
  for (int offset = kSpan / 2; offset > 0; offset /= 2)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The sum / max over the warp, the same value in every lane. FP64 sums are for totals that
// must not lose digits (cross-entropy's Σ exp, routing's softmax totals, dot products).
__device__ inline float warp_sum(float v) { return lanes_reduce(v, SumOp{}); }
__device__ inline double warp_sum(double v) { return lanes_reduce(v, SumOp{}); }
__device__ inline float warp_max(float v) { return lanes_reduce(v, MaxOp{}); }
__device__ inline int32_t warp_max(int32_t v) { return lanes_reduce(v, MaxOp{}); }

// `op` over the whole block (blockDim.x a multiple of 32, at most 1024), returned to every
// thread; `identity` fills the lanes past the block's warps. `scratch` is __shared__ T[32]; the
// call ends with a barrier so scratch can be reused right away.
template <typename T, typename Op>
__device__ inline T block_reduce(T v, T* scratch, T identity, Op op) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = lanes_reduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : identity;
  v = lanes_reduce(v, op);
  __syncthreads();
  return v;
}

__device__ inline float block_sum(float v, float* scratch) {
  return block_reduce(v, scratch, 0.0f, SumOp{});
}
__device__ inline double block_sum(double v, double* scratch) {
  return block_reduce(v, scratch, 0.0, SumOp{});
}
__device__ inline float block_max(float v, float* scratch) {
  return block_reduce(v, scratch, -INFINITY, MaxOp{});
}

}  // namespace baleine::kernels::cuda
