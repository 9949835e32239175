// FP8 dequantization on the GPU (kernels/cuda/fp8_dequantize.h), bit-identical to
// kernels/cpu/fp8_quantize.cpp's fp8_dequantize<float>:
//   - decode() rebuilds kernels/cpu/fp8.cpp's table entry from the code's bits (normal values by
//     placing exponent and mantissa, subnormals as mantissa · 2^k, which is exact; E5M2 ±inf;
//     every NaN code the canonical NaN 0x7FFFFFFF whatever its sign, as cuda_fp8.h decodes it),
//     so no table has to be copied from the host (baleine_cuda may not call kernels::fp8_decode:
//     it is linked after the CPU kernels' library);
//   - the product is one __fmul_rn, as the CPU's one float multiplication.
//
// Work: a 2-D grid. x walks groups of consecutive columns (4 with float4 stores when the rows
// stay 16-byte aligned, else 1), y walks rows with a stride of gridDim.y. A thread finds its
// columns' tiles once (one division) and then goes down the rows, tracking the tile row
// incrementally, so the memory-bound loop holds no 64-bit division. A warp reads and writes
// consecutive columns of one row: coalesced.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/fp8_dequantize.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Enough blocks for a few waves on the largest GPU (132 SMs × 8 blocks of 256 on an H200);
// beyond that, threads loop over rows, which amortizes their per-column set-up.
constexpr int64_t kTargetBlocks = 4096;
constexpr int64_t kMaxGridY = 65535;

struct DequantizeArgs {
  const uint8_t* codes;
  const float* scales;
  float* out;
  int64_t rows, cols;
  int64_t tile_rows, tile_cols;  // tile sides, clamped to the matrix (same scale indices)
  int64_t scale_cols;            // tiles per tile row
};

// kernels::fp8_decode, from the bits. kMantissaBits / kBias: 3 / 7 (E4M3) or 2 / 15 (E5M2).
template <Fp8Format kFormat>
__device__ __forceinline__ float decode(uint32_t code) {
  constexpr bool kE4M3 = kFormat == Fp8Format::kE4M3;
  constexpr int kMantissaBits = kE4M3 ? 3 : 2;
  constexpr int kBias = kE4M3 ? 7 : 15;
  // The value of one mantissa unit among subnormals: 2^(1 − bias − mantissa bits).
  constexpr float kSubnormalUnit = kE4M3 ? 0x1p-9f : 0x1p-16f;
  const uint32_t sign = (code & 0x80u) << 24;
  const uint32_t magnitude = code & 0x7Fu;
  const uint32_t exponent = magnitude >> kMantissaBits;
  const uint32_t mantissa = magnitude & ((1u << kMantissaBits) - 1);
  if (kE4M3 ? magnitude == 0x7Fu : exponent == 0x1Fu) {
    if (!kE4M3 && mantissa == 0) return __uint_as_float(sign | 0x7F800000u);  // ±inf
    return __uint_as_float(0x7FFFFFFFu);  // NaN, sign dropped as on the CPU
  }
  if (exponent == 0) {  // subnormal (or ±0): a small integer times a power of two, exact
    return __uint_as_float(sign | __float_as_uint(__fmul_rn(float(mantissa), kSubnormalUnit)));
  }
  return __uint_as_float(sign | ((exponent + 127 - kBias) << 23) |
                         (mantissa << (23 - kMantissaBits)));
}

// kWidth consecutive columns per thread: 4 (codes read as one uint32, out written as one
// float4; needs cols % 4 == 0 and aligned pointers) or 1.
template <Fp8Format kFormat, int kWidth>
__global__ void dequantize_kernel(DequantizeArgs a) {
  const int64_t groups = (a.cols + kWidth - 1) / kWidth;
  const int64_t group_stride = int64_t(gridDim.x) * blockDim.x;
  // Row walk: r starts at blockIdx.y and steps by gridDim.y, i.e. by step_tiles tile rows and
  // step_rest rows more.
  const int64_t step = gridDim.y;
  const int64_t step_tiles = step / a.tile_rows, step_rest = step % a.tile_rows;
  const int64_t first_tile = blockIdx.y / a.tile_rows, first_rest = blockIdx.y % a.tile_rows;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += group_stride) {
    const int64_t c0 = g * kWidth;
    // The tile column of each of the group's columns: one division, then +1 at a boundary
    // (a tile is at least one column wide, so a column crosses at most one).
    int64_t tile_col[kWidth];
    tile_col[0] = c0 / a.tile_cols;
    int64_t boundary = (tile_col[0] + 1) * a.tile_cols;
#pragma unroll
    for (int j = 1; j < kWidth; ++j) {
      const bool crosses = c0 + j == boundary;
      tile_col[j] = tile_col[j - 1] + (crosses ? 1 : 0);
      if (crosses) boundary += a.tile_cols;
    }
    int64_t tile_row = first_tile, rest = first_rest;
    for (int64_t r = blockIdx.y; r < a.rows; r += step) {
      const float* scales = a.scales + tile_row * a.scale_cols;
      if constexpr (kWidth == 4) {
        const uint32_t q = reinterpret_cast<const uint32_t*>(a.codes + r * a.cols)[g];
        reinterpret_cast<float4*>(a.out + r * a.cols)[g] =
            make_float4(__fmul_rn(decode<kFormat>(q & 0xFFu), scales[tile_col[0]]),
                        __fmul_rn(decode<kFormat>((q >> 8) & 0xFFu), scales[tile_col[1]]),
                        __fmul_rn(decode<kFormat>((q >> 16) & 0xFFu), scales[tile_col[2]]),
                        __fmul_rn(decode<kFormat>(q >> 24), scales[tile_col[3]]));
      } else {
        a.out[r * a.cols + c0] =
            __fmul_rn(decode<kFormat>(a.codes[r * a.cols + c0]), scales[tile_col[0]]);
      }
      tile_row += step_tiles;
      rest += step_rest;
      if (rest >= a.tile_rows) {  // rest < 2 · tile_rows: at most one more tile row
        rest -= a.tile_rows;
        ++tile_row;
      }
    }
  }
}

void check_arguments(const Fp8View& q, const float* out) {
  const char* op = "cuda::fp8_dequantize";
  if (q.rows < 0 || q.cols < 0 || q.tile.rows < 1 || q.tile.cols < 1) {
    throw std::invalid_argument(std::string(op) + ": invalid shape " + std::to_string(q.rows) +
                                "x" + std::to_string(q.cols) + " or tile " +
                                std::to_string(q.tile.rows) + "x" +
                                std::to_string(q.tile.cols));
  }
  if (q.rows > 0 && q.cols > 0 &&
      (q.codes == nullptr || q.scales == nullptr || out == nullptr)) {
    throw std::invalid_argument(std::string(op) + ": null codes, scales or out for a " +
                                std::to_string(q.rows) + "x" + std::to_string(q.cols) +
                                " matrix");
  }
}

template <Fp8Format kFormat>
void launch(const DequantizeArgs& args, bool vectorized, cudaStream_t stream) {
  const int width = vectorized ? 4 : 1;
  const unsigned blocks_x = blocks_for((args.cols + width - 1) / width, kThreads);
  const dim3 grid(blocks_x, static_cast<unsigned>(std::min(
                                {args.rows, kMaxGridY,
                                 std::max<int64_t>(1, kTargetBlocks / int64_t(blocks_x))})));
  if (vectorized) {
    dequantize_kernel<kFormat, 4><<<grid, kThreads, 0, stream>>>(args);
  } else {
    dequantize_kernel<kFormat, 1><<<grid, kThreads, 0, stream>>>(args);
  }
  BALEINE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void fp8_dequantize(const Fp8View& q, float* out, cudaStream_t stream) {
  NvtxRange range("fp8_dequantize");
  check_arguments(q, out);
  if (q.rows == 0 || q.cols == 0) return;
  DequantizeArgs args;
  args.codes = q.codes;
  args.scales = q.scales;
  args.out = out;
  args.rows = q.rows;
  args.cols = q.cols;
  // A tile side beyond the matrix gives every row (column) tile 0, as the side clamped to the
  // matrix does; clamping keeps the kernel's boundary arithmetic far from overflow.
  args.tile_rows = std::min(q.tile.rows, q.rows);
  args.tile_cols = std::min(q.tile.cols, q.cols);
  args.scale_cols = q.tile_cols();
  // Every row starts aligned when the first does and a row is a whole number of float4s.
  const bool vectorized = q.cols % 4 == 0 && is_aligned(q.codes, 4) && is_aligned(out, 16);
  if (q.format == Fp8Format::kE4M3) {
    launch<Fp8Format::kE4M3>(args, vectorized, stream);
  } else {
    launch<Fp8Format::kE5M2>(args, vectorized, stream);
  }
}

}  // namespace baleine::kernels::cuda
