#pragma once
// CUDA twins of kernels/elementwise.h (add, scale) and of the BF16 conversions of kernels/fp8.h.
// Device pointers, FP32 (BF16 as uint16_t bit patterns); work is enqueued on `stream` and
// n == 0 enqueues nothing. Deterministic: every output element depends on its inputs only.
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// out[i] = a[i] + b[i], as kernels/elementwise.h; out may alias a or b.
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream);

// x[i] *= s, as kernels::scale (one rounded product per element: bit-identical).
void scale(float* x, float s, int64_t n, cudaStream_t stream);

// out[i] = kernels::bf16_encode(x[i]) bit for bit: round to nearest even, NaN -> 0x7FFF,
// infinities and signed zeros kept, subnormals rounded like any other value.
void float_to_bf16(const float* x, uint16_t* out, int64_t n, cudaStream_t stream);
// out[i] = kernels::bf16_decode(x[i]) (exact: every BF16 value is a float).
void bf16_to_float(const uint16_t* x, float* out, int64_t n, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
