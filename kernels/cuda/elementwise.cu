// Elementwise kernels (kernels/cuda/elementwise.h): add, scale, and FP32 <-> BF16 conversion.
//
// All are bandwidth-bound, so each thread moves 16 bytes of floats per step (float4) when the
// pointers allow it, and a scalar loop finishes the last n % 4 elements. A thread reads its
// elements before writing the same ones, so out may alias an input even in the vector loop.
//
// BF16 encoding uses the CPU's bit arithmetic (kernels/fp8.h bf16_encode) rather than
// __float2bfloat16_rn: the same expression gives the same bits by construction on every
// architecture, NaN included (sm_75 has no BF16 conversion instruction, so cuda_bf16.h
// emulates it there; the integer version costs about the same and is bandwidth-bound anyway).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// How many whole float4 steps the vector loop takes (0: scalar loop only).
int64_t vector_steps(int64_t n, bool vectorizable) { return vectorizable ? n / 4 : 0; }

// The threads the launch needs: one per vector step, and at least one per tail element.
int64_t launch_items(int64_t n, int64_t steps) {
  const int64_t tail = n - 4 * steps;
  return steps > tail ? steps : tail;
}

__device__ __forceinline__ int64_t first_thread() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

__device__ __forceinline__ uint32_t bf16_bits(float x) {
  const uint32_t u = __float_as_uint(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFFu;
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

__device__ __forceinline__ float bf16_value(uint32_t bits) { return __uint_as_float(bits << 16); }

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n, int64_t steps) {
  const int64_t first = first_thread(), stride = grid_threads();
  for (int64_t i = first; i < steps; i += stride) {
    const float4 x = reinterpret_cast<const float4*>(a)[i];
    const float4 y = reinterpret_cast<const float4*>(b)[i];
    reinterpret_cast<float4*>(out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
  }
  for (int64_t i = 4 * steps + first; i < n; i += stride) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* x, float s, int64_t n, int64_t steps) {
  const int64_t first = first_thread(), stride = grid_threads();
  for (int64_t i = first; i < steps; i += stride) {
    float4 v = reinterpret_cast<float4*>(x)[i];
    v = make_float4(v.x * s, v.y * s, v.z * s, v.w * s);
    reinterpret_cast<float4*>(x)[i] = v;
  }
  for (int64_t i = 4 * steps + first; i < n; i += stride) x[i] *= s;
}

__global__ void float_to_bf16_kernel(const float* x, uint16_t* out, int64_t n, int64_t steps) {
  const int64_t first = first_thread(), stride = grid_threads();
  for (int64_t i = first; i < steps; i += stride) {
    const float4 v = reinterpret_cast<const float4*>(x)[i];
    // Little-endian: the lower-addressed BF16 value is the low half of each 32-bit word.
    reinterpret_cast<uint2*>(out)[i] = make_uint2(bf16_bits(v.x) | (bf16_bits(v.y) << 16),
                                                  bf16_bits(v.z) | (bf16_bits(v.w) << 16));
  }
  for (int64_t i = 4 * steps + first; i < n; i += stride)
    out[i] = static_cast<uint16_t>(bf16_bits(x[i]));
}

__global__ void bf16_to_float_kernel(const uint16_t* x, float* out, int64_t n, int64_t steps) {
  const int64_t first = first_thread(), stride = grid_threads();
  for (int64_t i = first; i < steps; i += stride) {
    const uint2 v = reinterpret_cast<const uint2*>(x)[i];
    reinterpret_cast<float4*>(out)[i] =
        make_float4(bf16_value(v.x & 0xFFFFu), bf16_value(v.x >> 16), bf16_value(v.y & 0xFFFFu),
                    bf16_value(v.y >> 16));
  }
  for (int64_t i = 4 * steps + first; i < n; i += stride) out[i] = bf16_value(x[i]);
}

}  // namespace

void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream) {
  NvtxRange range("add");
  if (n <= 0) return;
  const int64_t steps =
      vector_steps(n, is_aligned(a, 16) && is_aligned(b, 16) && is_aligned(out, 16));
  add_kernel<<<blocks_for(launch_items(n, steps), kThreads), kThreads, 0, stream>>>(a, b, out, n,
                                                                                  steps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void scale(float* x, float s, int64_t n, cudaStream_t stream) {
  NvtxRange range("scale");
  if (n <= 0) return;
  const int64_t steps = vector_steps(n, is_aligned(x, 16));
  scale_kernel<<<blocks_for(launch_items(n, steps), kThreads), kThreads, 0, stream>>>(x, s, n,
                                                                                    steps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void float_to_bf16(const float* x, uint16_t* out, int64_t n, cudaStream_t stream) {
  NvtxRange range("float_to_bf16");
  if (n <= 0) return;
  const int64_t steps = vector_steps(n, is_aligned(x, 16) && is_aligned(out, 8));
  float_to_bf16_kernel<<<blocks_for(launch_items(n, steps), kThreads), kThreads, 0, stream>>>(
      x, out, n, steps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void bf16_to_float(const uint16_t* x, float* out, int64_t n, cudaStream_t stream) {
  NvtxRange range("bf16_to_float");
  if (n <= 0) return;
  const int64_t steps = vector_steps(n, is_aligned(x, 8) && is_aligned(out, 16));
  bf16_to_float_kernel<<<blocks_for(launch_items(n, steps), kThreads), kThreads, 0, stream>>>(
      x, out, n, steps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
