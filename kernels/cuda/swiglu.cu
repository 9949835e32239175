// SwiGLU gate (kernels/cuda/swiglu.h), the same formulas as kernels/cpu/swiglu.cpp:
//   h = a · s · b,  da = dh · b · s · (1 + a · (1 − s)),  db = dh · a · s,  s = σ(a).
// σ(a) = 1 / (1 + e^(−a)) with expf (not __expf: the fast intrinsic loses several ulps for
// large |a|, and this kernel is bandwidth-bound anyway). e^(−a) overflows to inf only where
// σ → 0, so σ stays finite, as on the CPU.
//
// Bandwidth-bound: float4 steps when every pointer is 16-byte aligned, then a scalar loop for
// the last n % 4 values. A thread reads all its inputs before writing, so da or db may alias dh.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"
#include "kernels/cuda/swiglu.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One thread per float4 step, and at least one per value of the scalar tail.
int64_t launch_items(int64_t n, int64_t steps) {
  const int64_t tail = n - 4 * steps;
  return steps > tail ? steps : tail;
}

__device__ __forceinline__ float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

__device__ __forceinline__ float gate(float a, float b) { return a * sigmoid(a) * b; }

struct Grads {
  float da, db;
};
__device__ __forceinline__ Grads gate_grads(float g, float a, float b) {
  const float s = sigmoid(a);
  return {g * b * s * (1.0f + a * (1.0f - s)), g * a * s};
}

__global__ void swiglu_forward_kernel(const float* a, const float* b, float* h, int64_t n,
                                      int64_t steps) {
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = first; i < steps; i += stride) {
    const float4 x = reinterpret_cast<const float4*>(a)[i];
    const float4 y = reinterpret_cast<const float4*>(b)[i];
    reinterpret_cast<float4*>(h)[i] =
        make_float4(gate(x.x, y.x), gate(x.y, y.y), gate(x.z, y.z), gate(x.w, y.w));
  }
  for (int64_t i = 4 * steps + first; i < n; i += stride) h[i] = gate(a[i], b[i]);
}

__global__ void swiglu_backward_kernel(const float* dh, const float* a, const float* b, float* da,
                                       float* db, int64_t n, int64_t steps) {
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = first; i < steps; i += stride) {
    const float4 g = reinterpret_cast<const float4*>(dh)[i];
    const float4 x = reinterpret_cast<const float4*>(a)[i];
    const float4 y = reinterpret_cast<const float4*>(b)[i];
    const Grads r0 = gate_grads(g.x, x.x, y.x), r1 = gate_grads(g.y, x.y, y.y),
                r2 = gate_grads(g.z, x.z, y.z), r3 = gate_grads(g.w, x.w, y.w);
    reinterpret_cast<float4*>(da)[i] = make_float4(r0.da, r1.da, r2.da, r3.da);
    reinterpret_cast<float4*>(db)[i] = make_float4(r0.db, r1.db, r2.db, r3.db);
  }
  for (int64_t i = 4 * steps + first; i < n; i += stride) {
    const Grads r = gate_grads(dh[i], a[i], b[i]);
    da[i] = r.da;
    db[i] = r.db;
  }
}

}  // namespace

void swiglu_forward(const float* a, const float* b, float* h, int64_t n, cudaStream_t stream) {
  NvtxRange range("swiglu_forward");
  if (n <= 0) return;
  const int64_t steps = is_aligned(a, 16) && is_aligned(b, 16) && is_aligned(h, 16) ? n / 4 : 0;
  swiglu_forward_kernel<<<blocks_for(launch_items(n, steps), kThreads), kThreads, 0, stream>>>(
      a, b, h, n, steps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

void swiglu_backward(const float* dh, const float* a, const float* b, float* da, float* db,
                     int64_t n, cudaStream_t stream) {
  NvtxRange range("swiglu_backward");
  if (n <= 0) return;
  const bool vectorizable =
      is_aligned(dh, 16) && is_aligned(a, 16) && is_aligned(b, 16) && is_aligned(da, 16) &&
      is_aligned(db, 16);
  const int64_t steps = vectorizable ? n / 4 : 0;
  swiglu_backward_kernel<<<blocks_for(launch_items(n, steps), kThreads), kThreads, 0, stream>>>(
      dh, a, b, da, db, n, steps);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace baleine::kernels::cuda
