// AdamW and the gradient sum of squares on the GPU (kernels/cuda/adamw.h), the same arithmetic
// as kernels/cpu/adamw.cpp.
//
// The update is elementwise and written with __fmul_rn / __fadd_rn / __fdiv_rn / __fsqrt_rn:
// nvcc fuses a·b + c into one FMA by default, which would round differently from the formula
// as written; the _rn intrinsics are never fused, so the GPU computes exactly the written
// formula (the CPU build may fuse some terms, hence a few ulps apart; see the header).
//
// The sum of squares reproduces the CPU's grouping exactly: chunks of 2^14 values, each summed
// over 8 interleaved lanes (lane l takes values begin + l, begin + l + 8, …; a ragged end goes
// to lane 0 after its own values), the lanes added 0..7 into 0, and the chunk sums added in
// chunk order. On the GPU one thread runs one lane of one chunk (8 adjacent threads read 32
// contiguous bytes per step), then a single thread adds the chunk sums in order: the last step
// is sequential, but it is one FP64 add per 64 KiB of gradient.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// The scalars of one step (kernels/cpu/adamw.cpp's StepCoefficients, plus 1 − β precomputed:
// the CPU forms the same float difference inside its loop).
struct Coefficients {
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float step_size;       // lr / (1 − β1^t)
  float inv_sqrt_bias2;  // 1 / √(1 − β2^t)
  float decay;           // 1 − lr·wd
  float eps, grad_scale;
};

// A float rounded on its own: a host compiler allowed to fuse (GCC's C++ default on an FMA
// target) would otherwise form 1 − lr·wd with one rounding instead of the two written.
float rounded(float x) {
  volatile float stored = x;
  return stored;
}

Coefficients coefficients_of(const AdamWStep& step) {
  const float bias1 = float(1.0 - std::pow(double(step.beta1), double(step.step)));
  const float bias2 = float(1.0 - std::pow(double(step.beta2), double(step.step)));
  return {step.beta1,
          step.beta2,
          1.0f - step.beta1,
          1.0f - step.beta2,
          step.lr / bias1,
          float(1.0 / std::sqrt(double(bias2))),
          1.0f - rounded(step.lr * step.weight_decay),
          step.eps,
          step.grad_scale};
}

// kernels/cpu/adamw.cpp's update_element, every operation rounded as written.
__device__ __forceinline__ void update_element(float& param, float grad, float& m, float& v,
                                               const Coefficients& c) {
  const float g = __fmul_rn(grad, c.grad_scale);
  m = __fadd_rn(__fmul_rn(c.beta1, m), __fmul_rn(c.one_minus_beta1, g));
  v = __fadd_rn(__fmul_rn(c.beta2, v), __fmul_rn(__fmul_rn(c.one_minus_beta2, g), g));
  const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(v), c.inv_sqrt_bias2), c.eps);
  param = __fsub_rn(__fmul_rn(param, c.decay), __fdiv_rn(__fmul_rn(c.step_size, m), denom));
}

// kernels::bf16_encode / bf16_decode, the same bit operations.
__device__ __forceinline__ uint16_t bf16_encode_bits(float x) {
  const uint32_t u = __float_as_uint(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float bf16_decode_bits(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}

__global__ void adamw_fp32_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                                  Coefficients c) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float p = param[i], mi = m[i], vi = v[i];
    update_element(p, grad[i], mi, vi, c);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void adamw_bf16_moments_kernel(float* param, const float* grad, uint16_t* m,
                                          uint16_t* v, int64_t n, Coefficients c) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float p = param[i], mi = bf16_decode_bits(m[i]), vi = bf16_decode_bits(v[i]);
    update_element(p, grad[i], mi, vi, c);
    param[i] = p;
    m[i] = bf16_encode_bits(mi);
    v[i] = bf16_encode_bits(vi);
  }
}

// The CPU's grouping (kernels/cpu/adamw.cpp, sum_of_squares).
constexpr int64_t kChunk = 1 << 14;
constexpr int kLanes = 8;

int64_t chunks_of(int64_t n) { return n > 0 ? (n + kChunk - 1) / kChunk : 0; }

// partial[c] = Σ x² over chunk c. Thread t runs lane t % 8 of chunk t / 8; blockDim is a
// multiple of 8, so a chunk's 8 lanes are adjacent lanes of one warp and meet in a shuffle.
// The grid-stride loop's bound is the same for the whole block, so every lane of a warp reaches
// the shuffle; threads past the last chunk carry 0 and store nothing.
__global__ void chunk_sums_of_squares(const float* x, int64_t n, int64_t chunks,
                                      double* partial) {
  const int64_t lanes_total = chunks * kLanes;
  for (int64_t base = int64_t(blockIdx.x) * blockDim.x; base < lanes_total;
       base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = base + threadIdx.x;
    const int64_t chunk = t / kLanes;
    const int lane = static_cast<int>(t % kLanes);
    double lane_sum = 0;
    if (chunk < chunks) {
      const int64_t begin = chunk * kChunk;
      const int64_t end = n < begin + kChunk ? n : begin + kChunk;
      const int64_t whole_end = begin + (end - begin) / kLanes * kLanes;
#pragma unroll 8
      for (int64_t i = begin + lane; i < whole_end; i += kLanes) {
        const double value = x[i];
        lane_sum += value * value;  // exact product: fusing it into the add changes nothing
      }
      if (lane == 0) {
        for (int64_t i = whole_end; i < end; ++i) {
          const double value = x[i];
          lane_sum += value * value;
        }
      }
    }
    double chunk_sum = 0;
    for (int l = 0; l < kLanes; ++l) chunk_sum += __shfl_sync(0xffffffffu, lane_sum, l, kLanes);
    if (lane == 0 && chunk < chunks) partial[chunk] = chunk_sum;
  }
}

// One thread: the chunk sums added in chunk order, as the CPU adds them.
__global__ void add_chunk_sums_in_order(const double* partial, int64_t chunks,
                                        double* device_total, bool accumulate) {
  double total = 0;
#pragma unroll 8
  for (int64_t c = 0; c < chunks; ++c) total += partial[c];
  *device_total = accumulate ? *device_total + total : total;
}

void sum_of_squares_into(const float* x, int64_t n, double* device_total, double* workspace,
                         bool accumulate, cudaStream_t stream) {
  const int64_t chunks = chunks_of(n);
  chunk_sums_of_squares<<<blocks_for(chunks * kLanes, kThreads), kThreads, 0, stream>>>(
      x, n, chunks, workspace);
  BALEINE_CUDA_LAUNCH_CHECK();
  add_chunk_sums_in_order<<<1, 1, 0, stream>>>(workspace, chunks, device_total, accumulate);
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& step, cudaStream_t stream) {
  NvtxRange range("adamw_update");
  if (n <= 0) return;
  adamw_fp32_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(param, grad, m, v, n,
                                                                      coefficients_of(step));
  BALEINE_CUDA_LAUNCH_CHECK();
}

void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& step, cudaStream_t stream) {
  NvtxRange range("adamw_update_bf16_moments");
  if (n <= 0) return;
  adamw_bf16_moments_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
      param, grad, m, v, n, coefficients_of(step));
  BALEINE_CUDA_LAUNCH_CHECK();
}

int64_t sum_of_squares_workspace_doubles(int64_t n) { return chunks_of(n); }

void sum_of_squares(const float* x, int64_t n, double* device_total, double* workspace,
                    cudaStream_t stream) {
  NvtxRange range("sum_of_squares");
  if (n <= 0) {
    // All-zero bytes are +0.0: the CPU's sum of nothing.
    BALEINE_CUDA_CALL(cudaMemsetAsync(device_total, 0, sizeof(double), stream));
    return;
  }
  sum_of_squares_into(x, n, device_total, workspace, /*accumulate=*/false, stream);
}

void sum_of_squares_accumulate(const float* x, int64_t n, double* device_total,
                               double* workspace, cudaStream_t stream) {
  NvtxRange range("sum_of_squares_accumulate");
  if (n <= 0) return;
  sum_of_squares_into(x, n, device_total, workspace, /*accumulate=*/true, stream);
}

}  // namespace baleine::kernels::cuda
