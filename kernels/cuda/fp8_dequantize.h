#pragma once
// CUDA twin of kernels::fp8_dequantize<float> (kernels/fp8_quantize.h): a tiled FP8 matrix
// back to FP32, out[r·cols + c] = decode(code) · scale_at(r, c). Bit-identical to the CPU
// (E4M3 and E5M2, any tile shape, edge tiles included): the decode is exact and the product is
// one IEEE-rounded FP32 multiplication on both sides. Used where a quantized tensor must be read
// back in full precision on the GPU (checks, the FP8 round trip of an activation).
//
// Device pointers (q.codes, q.scales, out; out holds rows·cols floats); work is enqueued on
// `stream`; an empty matrix enqueues nothing. Allocates nothing; deterministic. Throws
// std::invalid_argument for a negative shape, a tile side below 1, or a null pointer when the
// matrix is not empty.
//
// Requires IEEE single-precision arithmetic in device code (nvcc's default): with
// --use_fast_math or -ftz=true, products below FLT_MIN would be flushed to zero where the CPU
// keeps them.
#include "kernels/cuda/stream.h"
#include "kernels/fp8_quantize.h"

namespace baleine::kernels::cuda {

void fp8_dequantize(const Fp8View& q, float* out, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
