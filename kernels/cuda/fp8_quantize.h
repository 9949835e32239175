#pragma once
// CUDA twin of kernels/fp8_quantize.h: fine-grained FP8 quantization of an FP32 matrix into
// device buffers, one FP32 scale per tile. Codes and scales are bit-identical to
// kernels::fp8_quantize / fp8_quantize_transposed (E4M3 and E5M2, power_of_two on or off, every
// edge case listed there: NaN → 0x7F, ±inf saturates and is left out of amax, FLT_MIN floor on
// the scale, scale 1 for a tile with no nonzero finite value, smaller edge tiles). Deterministic.
//
// Device pointers; work is enqueued on `stream`; an empty matrix enqueues nothing. The caller
// allocates `codes` (rows·cols bytes) and `scales` (fp8_scale_count floats) on the device. The
// returned view points into them (device pointers: hand it to kernels/fp8_gemm_cuda.h, not to
// Fp8View::value on the host). Throws std::invalid_argument, as the CPU, for a negative shape
// or a tile side below 1.
//
// Requires IEEE single-precision arithmetic in device code (nvcc's default): with
// --use_fast_math or -ftz=true, subnormal inputs would be flushed and codes would differ.
#include <cstdint>

#include "kernels/cuda/stream.h"
#include "kernels/fp8_quantize.h"

namespace baleine::kernels::cuda {

// Scales of a [rows, cols] matrix in tiles of `tile`: ceil(rows/tile.rows)·ceil(cols/tile.cols)
// (the same count for the transposed output).
int64_t fp8_scale_count(int64_t rows, int64_t cols, Fp8Tile tile);

// codes [rows, cols] and scales [tile_rows, tile_cols] ← x [rows, cols] quantized in tiles of
// `tile`, as kernels::fp8_quantize (1×128 for activations, 128×128 for weights, any tile).
Fp8View fp8_quantize(const float* x, int64_t rows, int64_t cols, Fp8Tile tile,
                     const Fp8ScaleOptions& options, uint8_t* codes, float* scales,
                     cudaStream_t stream);

// codes [cols, rows] ← xᵀ quantized with tiles taken in x's coordinates, as
// kernels::fp8_quantize_transposed: tile {128, 1} on x [tokens, K] gives the Wgrad operand
// [K, tokens] in 1×128 tiles. The view's tile is {tile.cols, tile.rows}.
Fp8View fp8_quantize_transposed(const float* x, int64_t rows, int64_t cols, Fp8Tile tile,
                                const Fp8ScaleOptions& options, uint8_t* codes, float* scales,
                                cudaStream_t stream);

}  // namespace baleine::kernels::cuda
