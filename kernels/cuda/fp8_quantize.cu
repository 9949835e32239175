// Fine-grained FP8 quantization on the GPU (kernels/cuda/fp8_quantize.h), bit-identical to
// kernels/cpu/fp8_quantize.cpp. What makes it identical:
//   - amax is an integer max over the bits of |x| for finite x (non-negative floats order like
//     their bits), so it is exact whatever the order of the reduction;
//   - the scale is fp8_tile_scale's float operations, each IEEE-rounded (__fdiv_rn), and the
//     power-of-two rounding is done on the bits (the same as its frexp / ldexp);
//   - codes are __nv_cvt_float_to_fp8(x · (1/scale), __NV_SATFINITE), which the CPU codec
//     matches bit for bit, with NaN pinned to 0x7F as the CPU writes it (so the codes cannot
//     depend on which NaN pattern the sm_89+ conversion instruction returns).
//
// Work: one block per window of one tile row: rows [r0, r1) of the tile row and a window of
// whole tiles along the columns. A tile at least a warp wide (1×128, 128×128) is one window by
// itself; narrower tiles (128×1) are grouped 32 / tile.cols to a window, so that a warp still
// reads 32 adjacent floats of a row. The block reads its window twice: for the tiles' amax,
// then to encode (the second read comes from L1/L2). The transposed quantizer encodes in the
// output's order instead (consecutive threads down a column of x), so its bytes are written
// contiguously.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kMaxThreads = 256;
// Columns of a window of narrow tiles, and the most tiles a window holds (shared arrays).
constexpr int64_t kNarrowWindow = kWarp;
constexpr int64_t kMaxBlocks = 65535LL * 8;

struct QuantizeArgs {
  const float* x;
  int64_t rows, cols;
  Fp8Tile tile;
  int64_t row_tiles, col_tiles;  // of x
  int64_t tiles_per_window;      // ≤ kNarrowWindow
  int64_t windows;               // per tile row
  float fp8_max;
  bool power_of_two;
  uint8_t* codes;
  float* scales;
};

// |v| as bits when v is finite, else 0 (kernels/cpu/fp8_quantize.cpp's finite_magnitude_bits).
__device__ __forceinline__ int32_t finite_magnitude_bits(float v) {
  const int32_t magnitude = __float_as_int(v) & 0x7FFFFFFF;
  return magnitude < 0x7F800000 ? magnitude : 0;
}

// kernels::fp8_tile_scale for an amax given as its bits (finite, ≥ 0).
__device__ __forceinline__ float tile_scale(int32_t amax_bits, float fp8_max, bool power_of_two) {
  const float amax = __int_as_float(amax_bits);
  if (!(amax > 0.0f)) return 1.0f;
  const float scale = fmaxf(__fdiv_rn(fminf(amax, FLT_MAX), fp8_max), FLT_MIN);
  if (!power_of_two) return scale;
  // The smallest power of two ≥ scale. scale is normal (≥ FLT_MIN) and far below 2^127, so it
  // is itself when its mantissa bits are 0, else the next exponent with a zero mantissa.
  const uint32_t bits = __float_as_uint(scale);
  if ((bits & 0x007FFFFFu) == 0) return scale;
  return __uint_as_float((bits & 0x7F800000u) + 0x00800000u);
}

template <__nv_fp8_interpretation_t kFormat>
__device__ __forceinline__ uint8_t encode(float y) {
  if (isnan(y)) return 0x7F;
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(y, __NV_SATFINITE, kFormat));
}

// Calls f(outer, inner) for every outer < outer_n and inner < inner_n (both ≥ 1), spread over
// the block with consecutive threads on consecutive `inner`, so memory contiguous along inner
// is accessed coalesced. When inner_n < blockDim.x, several outer indices share a pass and a
// thread keeps one `inner` throughout. Holds no barrier (threads may leave it unevenly).
template <typename F>
__device__ __forceinline__ void for_each_in_block(int64_t outer_n, int64_t inner_n, F&& f) {
  const int64_t t = threadIdx.x, threads = blockDim.x;
  if (inner_n >= threads) {
    for (int64_t outer = 0; outer < outer_n; ++outer)
      for (int64_t inner = t; inner < inner_n; inner += threads) f(outer, inner);
  } else {
    const int64_t per_pass = threads / inner_n;  // ≥ 1
    const int64_t first_outer = t / inner_n, inner = t % inner_n;
    if (first_outer < per_pass) {
      for (int64_t outer = first_outer; outer < outer_n; outer += per_pass) f(outer, inner);
    }
  }
}

template <__nv_fp8_interpretation_t kFormat, bool kTransposed>
__global__ void quantize_windows(QuantizeArgs a) {
  __shared__ int32_t tile_amax[kNarrowWindow];
  __shared__ float tile_inverse_scale[kNarrowWindow];
  const int64_t tw = a.tile.cols;
  const int64_t work = a.row_tiles * a.windows;
  // b is the same for the whole block, so every thread reaches every barrier below.
  for (int64_t b = blockIdx.x; b < work; b += gridDim.x) {
    const int64_t tile_row = b / a.windows, window = b - tile_row * a.windows;
    const int64_t r0 = tile_row * a.tile.rows;
    const int64_t height = min(r0 + a.tile.rows, a.rows) - r0;
    const int64_t first_tile = window * a.tiles_per_window;
    const int64_t tiles = min(first_tile + a.tiles_per_window, a.col_tiles) - first_tile;
    const int64_t c0 = first_tile * tw;
    const int64_t width = min(c0 + tiles * tw, a.cols) - c0;
    const float* x = a.x + r0 * a.cols + c0;  // the window's top-left value
    // The window's tile of column c. A window of several tiles is narrow (c < 32): 32-bit
    // division, not the slow 64-bit one.
    const auto tile_of = [&](int64_t c) {
      return tiles == 1 ? 0 : static_cast<int>(c) / static_cast<int>(tw);
    };

    if (threadIdx.x < kNarrowWindow) tile_amax[threadIdx.x] = 0;
    __syncthreads();

    // Pass 1: each tile's largest finite magnitude. A thread's running max goes to its tile's
    // slot whenever it moves to another tile (with the mapping of for_each_in_block it never
    // does, but correctness should not rest on that).
    int32_t running = 0;
    int running_tile = 0;
    for_each_in_block(height, width, [&](int64_t r, int64_t c) {
      const int tile = tile_of(c);
      if (tile != running_tile) {
        if (running > 0) atomicMax(&tile_amax[running_tile], running);
        running = 0;
        running_tile = tile;
      }
      running = max(running, finite_magnitude_bits(x[r * a.cols + c]));
    });
    if (tiles == 1) {  // the same for the whole block: the warp shuffle sees every lane
      running = warp_max(running);
      if (threadIdx.x % kWarp == 0 && running > 0) atomicMax(&tile_amax[0], running);
    } else if (running > 0) {
      atomicMax(&tile_amax[running_tile], running);
    }
    __syncthreads();

    if (threadIdx.x < tiles) {
      const float scale = tile_scale(tile_amax[threadIdx.x], a.fp8_max, a.power_of_two);
      const int64_t tile_col = first_tile + threadIdx.x;
      a.scales[kTransposed ? tile_col * a.row_tiles + tile_row
                           : tile_row * a.col_tiles + tile_col] = scale;
      tile_inverse_scale[threadIdx.x] = __fdiv_rn(1.0f, scale);
    }
    __syncthreads();

    // Pass 2: codes. The next iteration's first writes to shared memory (tile_amax, by the
    // thread that alone read that slot above; tile_inverse_scale, after two more barriers)
    // cannot overtake this pass, so it needs no barrier after it.
    if constexpr (kTransposed) {
      uint8_t* out = a.codes + c0 * a.rows + r0;  // output row c0 + c, column r0 + r
      for_each_in_block(width, height, [&](int64_t c, int64_t r) {
        out[c * a.rows + r] =
            encode<kFormat>(__fmul_rn(x[r * a.cols + c], tile_inverse_scale[tile_of(c)]));
      });
    } else {
      uint8_t* out = a.codes + r0 * a.cols + c0;
      for_each_in_block(height, width, [&](int64_t r, int64_t c) {
        out[r * a.cols + c] =
            encode<kFormat>(__fmul_rn(x[r * a.cols + c], tile_inverse_scale[tile_of(c)]));
      });
    }
  }
}

// kernels::fp8_max, restated: baleine_cuda is linked after the CPU kernels' library and must not
// need a symbol from it.
float largest_finite(Fp8Format format) { return format == Fp8Format::kE4M3 ? 448.0f : 57344.0f; }

void check_shape(int64_t rows, int64_t cols, Fp8Tile tile, const char* op) {
  if (rows < 0 || cols < 0 || tile.rows < 1 || tile.cols < 1) {
    throw std::invalid_argument(std::string(op) + ": invalid shape " + std::to_string(rows) +
                                "x" + std::to_string(cols) + " or tile " +
                                std::to_string(tile.rows) + "x" + std::to_string(tile.cols));
  }
}

template <bool kTransposed>
void launch(const QuantizeArgs& args, Fp8Format format, cudaStream_t stream) {
  const int64_t band_rows = std::min(args.tile.rows, args.rows);
  const int64_t window_cols = std::min(args.tiles_per_window * args.tile.cols, args.cols);
  const int64_t values = band_rows * window_cols;  // in the largest window
  const int threads =
      static_cast<int>(std::clamp<int64_t>((values + kWarp - 1) / kWarp * kWarp, kWarp,
                                           kMaxThreads));
  const unsigned blocks =
      static_cast<unsigned>(std::min(args.row_tiles * args.windows, kMaxBlocks));
  if (format == Fp8Format::kE4M3) {
    quantize_windows<__NV_E4M3, kTransposed><<<blocks, threads, 0, stream>>>(args);
  } else {
    quantize_windows<__NV_E5M2, kTransposed><<<blocks, threads, 0, stream>>>(args);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

template <bool kTransposed>
Fp8View quantize(const float* x, int64_t rows, int64_t cols, Fp8Tile tile,
                 const Fp8ScaleOptions& options, uint8_t* codes, float* scales,
                 cudaStream_t stream) {
  check_shape(rows, cols, tile,
              kTransposed ? "cuda::fp8_quantize_transposed" : "cuda::fp8_quantize");
  const Fp8View view = kTransposed
                           ? Fp8View{codes, scales, cols, rows, {tile.cols, tile.rows},
                                     options.format}
                           : Fp8View{codes, scales, rows, cols, tile, options.format};
  if (rows == 0 || cols == 0) return view;
  QuantizeArgs args;
  args.x = x;
  args.rows = rows;
  args.cols = cols;
  args.tile = tile;
  args.row_tiles = (rows + tile.rows - 1) / tile.rows;
  args.col_tiles = (cols + tile.cols - 1) / tile.cols;
  args.tiles_per_window = tile.cols >= kNarrowWindow ? 1 : kNarrowWindow / tile.cols;
  args.windows = (args.col_tiles + args.tiles_per_window - 1) / args.tiles_per_window;
  args.fp8_max = largest_finite(options.format);
  args.power_of_two = options.power_of_two;
  args.codes = codes;
  args.scales = scales;
  launch<kTransposed>(args, options.format, stream);
  return view;
}

}  // namespace

int64_t fp8_scale_count(int64_t rows, int64_t cols, Fp8Tile tile) {
  check_shape(rows, cols, tile, "cuda::fp8_scale_count");
  return ((rows + tile.rows - 1) / tile.rows) * ((cols + tile.cols - 1) / tile.cols);
}

Fp8View fp8_quantize(const float* x, int64_t rows, int64_t cols, Fp8Tile tile,
                     const Fp8ScaleOptions& options, uint8_t* codes, float* scales,
                     cudaStream_t stream) {
  NvtxRange range("fp8_quantize");
  return quantize<false>(x, rows, cols, tile, options, codes, scales, stream);
}

Fp8View fp8_quantize_transposed(const float* x, int64_t rows, int64_t cols, Fp8Tile tile,
                                const Fp8ScaleOptions& options, uint8_t* codes, float* scales,
                                cudaStream_t stream) {
  NvtxRange range("fp8_quantize_transposed");
  return quantize<true>(x, rows, cols, tile, options, codes, scales, stream);
}

}  // namespace baleine::kernels::cuda
