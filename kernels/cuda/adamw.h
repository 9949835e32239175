#pragma once
// CUDA twin of kernels/adamw.h: the AdamW update (FP32 or BF16 moments) and the sum of squares
// behind the global gradient norm. Device pointers; work is enqueued on `stream`; n == 0
// enqueues nothing (except sum_of_squares, which still writes its zero). Deterministic.
//
// Agreement with the CPU kernels:
//   - adamw_update*: every element is computed as the formula in kernels/adamw.h is written,
//     each product and sum rounded to FP32 on its own (no fused multiply-add), with the step's
//     coefficients formed on the host as kernels/cpu/adamw.cpp forms them. The CPU build
//     (-O3 -march=native; GCC fuses a·b + c by default in C++) may fuse some of them, so the
//     two agree to a few ulps per step, not bit for bit (see tests/kernels/adamw_cuda_test.cpp).
//     BF16 moments are encoded exactly as kernels::bf16_encode (nearest even, NaN → 0x7FFF).
//   - sum_of_squares*: bit-identical to kernels::sum_of_squares<float>: the same chunks, lanes
//     and order of FP64 additions (a float squared is exact in FP64, so fusing cannot matter).
#include <cstdint>

#include "kernels/adamw.h"
#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// As kernels::adamw_update: param, m, v updated in place.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& step, cudaStream_t stream);

// As kernels::adamw_update_bf16_moments: m, v are BF16 bit patterns, updated in place.
void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& step, cudaStream_t stream);

// The global gradient norm over many buffers without a host round trip: the total lives on the
// device and each call adds one buffer to it, in call order, so the result is
//   ((0 + Σ x₀²) + Σ x₁²) + …   with each Σ bit-identical to kernels::sum_of_squares,
// i.e. what the host would get adding the CPU's per-buffer sums in the same order.
//
// `workspace`: device doubles, at least sum_of_squares_workspace_doubles(n). Calls that share
// one workspace (and one total) must be on the same stream, which orders them.
int64_t sum_of_squares_workspace_doubles(int64_t n);
// *device_total = Σ x² (n == 0 writes 0).
void sum_of_squares(const float* x, int64_t n, double* device_total, double* workspace,
                    cudaStream_t stream);
// *device_total += Σ x².
void sum_of_squares_accumulate(const float* x, int64_t n, double* device_total,
                               double* workspace, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
