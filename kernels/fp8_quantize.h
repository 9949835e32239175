#pragma once
// Fine-grained FP8 quantization (DeepSeek-V3 report §3.3.2): one FP32 scale per tile, chosen
// online from the tile's largest magnitude, so one outlier only coarsens its own tile.
//   activations: 1×128 tiles (one row, 128 consecutive columns of K);
//   the Wgrad operand: 128×1 tiles (128 consecutive rows, i.e. tokens), stored transposed so
//                      the GEMM still reads K-contiguous rows;
//   weights: 128×128 blocks.
// A value is decode(code) · scale, with scale = amax / fp8_max(format) (or, with
// power_of_two, the smallest power of two ≥ that, so rescaling a tile is exact), and
// code = fp8_encode(x · (1/scale)): a multiplication by the reciprocal, as GPU quantizers do.
// An all-zero tile gets scale 1. Shapes need not be multiples of the tile: edge tiles are
// smaller. The edge cases, all defined:
//   - amax is over the tile's finite values: NaN encodes as NaN (0x7F), ±inf saturates to
//     ±fp8_max, and neither disturbs the other codes of its tile; a tile with no nonzero
//     finite value gets scale 1;
//   - scales are at least FLT_MIN (2^-126), so 1/scale is finite even for a tile of float
//     subnormals (whose codes then stay below fp8_max);
//   - double input is quantized as float(x), the precision GPU quantizers read.
#include <cstdint>
#include <vector>

#include "kernels/array.h"
#include "kernels/fp8.h"

namespace baleine::kernels {

struct Fp8Tile {
  int64_t rows = 1, cols = 128;
};

struct Fp8ScaleOptions {
  Fp8Format format = Fp8Format::kE4M3;
  bool power_of_two = false;
};

// A read-only view of a quantized [rows, cols] matrix (row-major codes). Tile (i, j) covers
// rows [i·tile.rows, …) and columns [j·tile.cols, …); its scale is scales[i·tile_cols() + j].
// Views hold raw pointers, so they stay valid while the buffers they point into do.
struct Fp8View {
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  int64_t rows = 0, cols = 0;
  Fp8Tile tile;
  Fp8Format format = Fp8Format::kE4M3;

  int64_t tile_rows() const { return (rows + tile.rows - 1) / tile.rows; }
  int64_t tile_cols() const { return (cols + tile.cols - 1) / tile.cols; }
  float scale_at(int64_t row, int64_t col) const {
    return scales[(row / tile.rows) * tile_cols() + col / tile.cols];
  }
  float value(int64_t row, int64_t col) const {
    return fp8_decode(codes[row * cols + col], format) * scale_at(row, col);
  }
  // Rows [first, first + count) of a view whose tiles are one row high (1×T): the same codes
  // and scales, offset. (A slice of a taller tiling would cut its tiles.) Throws
  // std::invalid_argument when tile.rows != 1, std::out_of_range for rows outside the view.
  Fp8View row_slice(int64_t first, int64_t count) const;
};

// An owning quantized matrix.
struct Fp8Matrix {
  Array<uint8_t> codes;  // in the current memory (kernels/array.h)
  Array<float> scales;
  int64_t rows = 0, cols = 0;
  Fp8Tile tile;
  Fp8Format format = Fp8Format::kE4M3;

  Fp8View view() const { return {codes.data(), scales.data(), rows, cols, tile, format}; }
  int64_t bytes() const {  // what it occupies: one byte per code, four per scale
    return static_cast<int64_t>(codes.size() + 4 * scales.size());
  }
};

// out ← x [rows, cols] quantized in tiles of `tile`. Buffers are resized (and reused). The
// result does not depend on the number of OpenMP threads. Throws std::invalid_argument for a
// negative shape or a tile side below 1.
template <typename T>
void fp8_quantize(const T* x, int64_t rows, int64_t cols, Fp8Tile tile,
                  const Fp8ScaleOptions& options, Fp8Matrix* out);

// out ← xᵀ [cols, rows], quantized in tiles of `tile` taken in x's coordinates (fused
// transpose): quantizing x [tokens, K] with tile {128, 1} gives the Wgrad operand, [K, tokens]
// in 1×128 tiles along tokens. The codes and scales equal those of fp8_quantize(xᵀ,
// {tile.cols, tile.rows}).
template <typename T>
void fp8_quantize_transposed(const T* x, int64_t rows, int64_t cols, Fp8Tile tile,
                             const Fp8ScaleOptions& options, Fp8Matrix* out);

// out [rows, cols] ← decode(code) · scale.
template <typename T>
void fp8_dequantize(const Fp8View& q, T* out);

// The scale of one tile whose largest finite magnitude is amax (NaN or amax ≤ 0 give 1; inf
// counts as FLT_MAX).
float fp8_tile_scale(float amax, const Fp8ScaleOptions& options);

}  // namespace baleine::kernels
