#pragma once
// CUDA twin of kernels/swiglu.h: the SwiGLU gate h = silu(a) · b, elementwise over n values.
// Device pointers, FP32; work is enqueued on `stream` and n == 0 enqueues nothing.
// Deterministic: every output element depends on its own inputs only.
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// h[i] = a[i] · sigmoid(a[i]) · b[i], as kernels/swiglu.h.
void swiglu_forward(const float* a, const float* b, float* h, int64_t n, cudaStream_t stream);
// da, db overwritten (either may alias dh), as kernels/swiglu.h.
void swiglu_backward(const float* dh, const float* a, const float* b, float* da, float* db,
                     int64_t n, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
