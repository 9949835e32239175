// Fine-grained FP8 quantization on the CPU (DeepSeek-V3 report §3.3.2): one FP32 scale per
// tile from the tile's largest magnitude, codes = fp8_encode(x · (1/scale)).
//
// Work is cut into items of whole tiles (a block of tile rows × a group of tile columns), so a
// tile's amax, scale and codes are computed by one thread and the result does not depend on the
// thread count. Within one tile row every column has one scale, so the encode pass is a flat
// loop over columns with a per-column reciprocal: it vectorizes for 1×128, 128×1 and 128×128
// tiles alike, with no division left in it. The transposed quantizer encodes in x's layout the
// same way and then transposes the bytes.
//
// Speed (4096×7168 floats in 1×128 tiles, 2-core AVX-512 dev VM): about 8 GB/s of input on one
// thread, 14 GB/s on two; the transposed 128×1 quantizer about 3.5 GB/s per thread. Encoding
// through the out-of-line fp8_encode_scaled instead managed under 2 GB/s.
//
// Values that are not finite do not set the scale (an inf or a NaN would otherwise make every
// other code in the tile 0 or NaN): NaN encodes as NaN (0x7F) and ±inf saturates to ±fp8_max.
#include "kernels/fp8_quantize.h"

#include "kernels/cpu/fp8_encode_inline.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace baleine::kernels {

namespace {

using detail::bits_of;
using detail::encode;
using detail::float_of;

// The smallest scale handed out: a tile whose amax is below fp8_max · 2^-126 (a float
// subnormal region) would get a subnormal scale whose reciprocal overflows to inf. With this
// floor, 1/scale = 2^126 stays finite and such a tile's codes just stop short of fp8_max.
constexpr float kMinScale = FLT_MIN;

// Tiles at least this wide reduce their amax directly; narrower ones go column by column.
constexpr int64_t kWideTile = 16;

// |v| as bits when v is finite, else 0: the bits of non-negative floats order like the values,
// so the tile's amax is an integer max (exact, and it vectorizes; GCC 12 vectorizes this
// reduction in int32 but not in uint32).
inline int32_t finite_magnitude_bits(float v) {
  const int32_t magnitude = static_cast<int32_t>(bits_of(v) & 0x7FFFFFFFu);
  return magnitude < 0x7F800000 ? magnitude : 0;
}

// Double input is quantized as float(x): the GPU quantizers read float or bf16, never double.
template <typename T>
inline float as_float(T v) {
  return static_cast<float>(v);
}

// The matrix, its tiling, and where scales go. Transposed: the output is [cols, rows] and
// x's tile (i, j) is the output's tile (j, i).
struct Geometry {
  int64_t rows, cols;
  Fp8Tile tile;
  int64_t tile_rows, tile_cols;  // of x
  bool transposed;

  int64_t scale_index(int64_t tile_row, int64_t tile_col) const {
    return transposed ? tile_col * tile_rows + tile_row : tile_row * tile_cols + tile_col;
  }
};

// Row pitch of the staged codes: a multiple of 64 plus one cache line, so the column walk of the
// transpose touches every L1 set (a power-of-two pitch would pile its rows into a few sets).
int64_t staged_stride(int64_t width) { return (width + 63) / 64 * 64 + 64; }

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }

// The 8×8 byte block in a[0..8) (row i = a[i], byte j at bits 8j) transposed in place: three
// rounds swap the off-diagonal 4×4, then 2×2, then 1×1 sub-blocks (Warren, "Hacker's Delight",
// §7-3, with bytes for bits).
void transpose_8x8(uint64_t a[8]) {
  constexpr uint64_t kLowBlocks[3] = {0x00000000FFFFFFFFull, 0x0000FFFF0000FFFFull,
                                      0x00FF00FF00FF00FFull};
  for (int round = 0; round < 3; ++round) {
    const int s = 4 >> round;  // block size in bytes
    for (int i = 0; i < 8; ++i) {
      if (i & s) continue;
      const uint64_t t = ((a[i] >> (8 * s)) ^ a[i + s]) & kLowBlocks[round];
      a[i + s] ^= t;
      a[i] ^= t << (8 * s);
    }
  }
}

// out[c · out_pitch + r] = in[r · in_pitch + c] for r < rows, c < cols: 8×8 blocks through
// registers, the ragged edges byte by byte.
void transpose_bytes(const uint8_t* in, int64_t in_pitch, int64_t rows, int64_t cols,
                     uint8_t* out, int64_t out_pitch) {
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  for (int64_t c = 0; c < cols8; c += 8) {
    for (int64_t r = 0; r < rows8; r += 8) {
      uint64_t block[8];
      for (int i = 0; i < 8; ++i) block[i] = load_u64(in + (r + i) * in_pitch + c);
      transpose_8x8(block);
      for (int j = 0; j < 8; ++j) store_u64(out + (c + j) * out_pitch + r, block[j]);
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = (c < cols8 ? rows8 : 0); r < rows; ++r) {
      out[c * out_pitch + r] = in[r * in_pitch + c];
    }
  }
}

// Per-thread buffers, sized for one item (they only grow).
struct Scratch {
  std::vector<int32_t> amax;    // per column: magnitude bits; then per tile, at its first column
  std::vector<float> inv;       // per column: 1/scale of its tile in the current tile row
  std::vector<uint8_t> staged;  // transposed only: the item's codes in x's layout
};

// Quantizes x's rows [r0, r1) × columns [c0, c1), both aligned to tiles.
template <typename T, Fp8Format F, bool kTransposed>
void quantize_item(const T* x, const Geometry& g, const Fp8ScaleOptions& options, int64_t r0,
                   int64_t r1, int64_t c0, int64_t c1, Scratch* scratch, uint8_t* codes,
                   float* scales) {
  const int64_t width = c1 - c0;
  const int64_t stride = staged_stride(width);
  int32_t* amax = scratch->amax.data();
  float* inv = scratch->inv.data();
  for (int64_t ra = r0; ra < r1; ra += g.tile.rows) {
    const int64_t rb = std::min(ra + g.tile.rows, g.rows);
    if (g.tile.cols >= kWideTile) {
      // Wide tiles: each tile's amax is one reduction in registers.
      for (int64_t ca = 0; ca < width; ca += g.tile.cols) {
        const int64_t cb = std::min(ca + g.tile.cols, width);
        int32_t m = 0;
        for (int64_t r = ra; r < rb; ++r) {
          const T* xr = x + r * g.cols + c0;
          for (int64_t c = ca; c < cb; ++c) {
            m = std::max(m, finite_magnitude_bits(as_float(xr[c])));
          }
        }
        amax[ca] = m;
      }
    } else {
      // Narrow tiles (128×1): a running max per column, row after row, then per tile.
      const T* x0 = x + ra * g.cols + c0;
      for (int64_t c = 0; c < width; ++c) amax[c] = finite_magnitude_bits(as_float(x0[c]));
      for (int64_t r = ra + 1; r < rb; ++r) {
        const T* xr = x + r * g.cols + c0;
        for (int64_t c = 0; c < width; ++c)
          amax[c] = std::max(amax[c], finite_magnitude_bits(as_float(xr[c])));
      }
      for (int64_t ca = 0; ca < width; ca += g.tile.cols) {
        amax[ca] = *std::max_element(amax + ca, amax + std::min(ca + g.tile.cols, width));
      }
    }
    for (int64_t ca = 0; ca < width; ca += g.tile.cols) {
      const int64_t cb = std::min(ca + g.tile.cols, width);
      const float scale = fp8_tile_scale(float_of(static_cast<uint32_t>(amax[ca])), options);
      scales[g.scale_index(ra / g.tile.rows, (c0 + ca) / g.tile.cols)] = scale;
      std::fill(inv + ca, inv + cb, 1.0f / scale);
    }
    for (int64_t r = ra; r < rb; ++r) {
      const T* xr = x + r * g.cols + c0;
      uint8_t* out =
          kTransposed ? scratch->staged.data() + (r - r0) * stride : codes + r * g.cols + c0;
      for (int64_t c = 0; c < width; ++c) out[c] = encode<F>(as_float(xr[c]) * inv[c]);
    }
  }
  if constexpr (kTransposed) {
    // Encoding in x's layout keeps the encode loop vectorized; the transpose then moves bytes.
    transpose_bytes(scratch->staged.data(), stride, r1 - r0, width, codes + c0 * g.rows + r0,
                    g.rows);
  }
}

template <typename T, Fp8Format F, bool kTransposed>
void quantize_all(const T* x, const Geometry& g, const Fp8ScaleOptions& options, uint8_t* codes,
                  float* scales) {
  // Items of whole tiles, at least 16 rows × 256 columns to amortize the per-tile work. A tile
  // row of an item spans about kItemBytes of x, so it is still in L2 when the encode pass
  // re-reads it; one-row tiles thus take whole rows, which the prefetcher streams best.
  constexpr int64_t kItemBytes = 256 << 10;
  const int64_t min_cols =
      std::max<int64_t>(256, kItemBytes / (g.tile.rows * int64_t(sizeof(T))));
  const int64_t block_rows = g.tile.rows * ((16 + g.tile.rows - 1) / g.tile.rows);
  const int64_t group_cols = g.tile.cols * ((min_cols + g.tile.cols - 1) / g.tile.cols);
  const int64_t row_blocks = (g.rows + block_rows - 1) / block_rows;
  const int64_t col_groups = (g.cols + group_cols - 1) / group_cols;
  const int64_t items = row_blocks * col_groups;
  const size_t width = static_cast<size_t>(std::min(group_cols, g.cols));
#pragma omp parallel if (g.rows * g.cols > (1 << 16))
  {
    thread_local Scratch scratch;  // kept between calls: a warm step allocates nothing
    scratch.amax.resize(width);
    scratch.inv.resize(width);
    if (kTransposed) {
      const int64_t staged_rows = std::min(block_rows, g.rows);
      scratch.staged.resize(static_cast<size_t>(staged_stride(int64_t(width)) * staged_rows));
    }
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t r0 = (item / col_groups) * block_rows;
      const int64_t c0 = (item % col_groups) * group_cols;
      quantize_item<T, F, kTransposed>(x, g, options, r0, std::min(r0 + block_rows, g.rows), c0,
                                       std::min(c0 + group_cols, g.cols), &scratch, codes,
                                       scales);
    }
  }
}

void check_shape(int64_t rows, int64_t cols, Fp8Tile tile, const char* op) {
  if (rows < 0 || cols < 0 || tile.rows < 1 || tile.cols < 1) {
    throw std::invalid_argument(std::string(op) + ": invalid shape " + std::to_string(rows) +
                                "x" + std::to_string(cols) + " or tile " +
                                std::to_string(tile.rows) + "x" + std::to_string(tile.cols));
  }
}

template <typename T, bool kTransposed>
void quantize(const T* x, int64_t rows, int64_t cols, Fp8Tile tile,
              const Fp8ScaleOptions& options, Fp8Matrix* out) {
  check_shape(rows, cols, tile, kTransposed ? "fp8_quantize_transposed" : "fp8_quantize");
  const Geometry g{rows,
                   cols,
                   tile,
                   (rows + tile.rows - 1) / tile.rows,
                   (cols + tile.cols - 1) / tile.cols,
                   kTransposed};
  out->rows = kTransposed ? cols : rows;
  out->cols = kTransposed ? rows : cols;
  out->tile = kTransposed ? Fp8Tile{tile.cols, tile.rows} : tile;
  out->format = options.format;
  out->codes.resize(static_cast<size_t>(rows * cols));
  out->scales.resize(static_cast<size_t>(g.tile_rows * g.tile_cols));
  if (rows == 0 || cols == 0) return;
  if (options.format == Fp8Format::kE4M3) {
    quantize_all<T, Fp8Format::kE4M3, kTransposed>(x, g, options, out->codes.data(),
                                                   out->scales.data());
  } else {
    quantize_all<T, Fp8Format::kE5M2, kTransposed>(x, g, options, out->codes.data(),
                                                   out->scales.data());
  }
}

}  // namespace

float fp8_tile_scale(float amax, const Fp8ScaleOptions& options) {
  if (!(amax > 0)) return 1.0f;  // an all-zero tile (or no finite value): any scale decodes it
  const float scale =
      std::max(std::min(amax, FLT_MAX) / fp8_max(options.format), kMinScale);
  if (!options.power_of_two) return scale;
  // The smallest power of two ≥ scale: scale = m · 2^e with m in [0.5, 1).
  int exponent;
  const float mantissa = std::frexp(scale, &exponent);
  return std::ldexp(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);
}

Fp8View Fp8View::row_slice(int64_t first, int64_t count) const {
  if (tile.rows != 1) {
    throw std::invalid_argument("Fp8View::row_slice: tiles are " + std::to_string(tile.rows) +
                                " rows high; only a 1×T tiling can be sliced by rows");
  }
  if (first < 0 || count < 0 || first + count > rows) {
    throw std::out_of_range("Fp8View::row_slice: rows [" + std::to_string(first) + ", " +
                            std::to_string(first + count) + ") of " + std::to_string(rows));
  }
  Fp8View slice = *this;
  slice.codes = codes + first * cols;
  slice.scales = scales + first * tile_cols();
  slice.rows = count;
  return slice;
}

template <typename T>
void fp8_quantize(const T* x, int64_t rows, int64_t cols, Fp8Tile tile,
                  const Fp8ScaleOptions& options, Fp8Matrix* out) {
  quantize<T, false>(x, rows, cols, tile, options, out);
}

template <typename T>
void fp8_quantize_transposed(const T* x, int64_t rows, int64_t cols, Fp8Tile tile,
                             const Fp8ScaleOptions& options, Fp8Matrix* out) {
  quantize<T, true>(x, rows, cols, tile, options, out);
}

template <typename T>
void fp8_dequantize(const Fp8View& q, T* out) {
  check_shape(q.rows, q.cols, q.tile, "fp8_dequantize");
  float decoded[256];
  for (int c = 0; c < 256; ++c) decoded[c] = fp8_decode(static_cast<uint8_t>(c), q.format);
  const int64_t tile_cols = q.tile_cols();
#pragma omp parallel for schedule(static) if (q.rows * q.cols > (1 << 16))
  for (int64_t r = 0; r < q.rows; ++r) {
    const uint8_t* codes = q.codes + r * q.cols;
    const float* scales = q.scales + (r / q.tile.rows) * tile_cols;
    T* row = out + r * q.cols;
    for (int64_t ca = 0; ca < q.cols; ca += q.tile.cols) {
      const T scale = static_cast<T>(scales[ca / q.tile.cols]);
      const int64_t cb = std::min(ca + q.tile.cols, q.cols);
      for (int64_t c = ca; c < cb; ++c) row[c] = static_cast<T>(decoded[codes[c]]) * scale;
    }
  }
}

template void fp8_quantize<float>(const float*, int64_t, int64_t, Fp8Tile,
                                  const Fp8ScaleOptions&, Fp8Matrix*);
template void fp8_quantize<double>(const double*, int64_t, int64_t, Fp8Tile,
                                   const Fp8ScaleOptions&, Fp8Matrix*);
template void fp8_quantize_transposed<float>(const float*, int64_t, int64_t, Fp8Tile,
                                             const Fp8ScaleOptions&, Fp8Matrix*);
template void fp8_quantize_transposed<double>(const double*, int64_t, int64_t, Fp8Tile,
                                              const Fp8ScaleOptions&, Fp8Matrix*);
template void fp8_dequantize<float>(const Fp8View&, float*);
template void fp8_dequantize<double>(const Fp8View&, double*);

}  // namespace baleine::kernels
