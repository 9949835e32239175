#pragma once
// FP8 GEMM with fine-grained scaling and FP32 accumulation, emulated on the CPU exactly as a
// tensor core running DeepSeek-V3's recipe computes it (report §3.3.2): inside one K tile the
// FP8 products are summed unscaled; at the tile's end the partial sum is multiplied by the two
// tiles' scales and added to an FP32 accumulator ("promotion").
//
// Layout "TN", as cuBLASLt wants FP8 operands: both A [M, K] and B [N, K] are K-contiguous and
// C[m, n] = Σ_k A[m, k] · B[n, k]. For a Linear y = x·Wᵀ (x [tokens, in], W [out, in]):
//   Fprop  y  [M=tokens, N=out] = x (1×128 tiles) · W (128×128 blocks)
//   Dgrad  dx [M=tokens, N=in ] = dy (1×128)      · Wᵀ (128×128 blocks, quantized transposed)
//   Wgrad  dW [M=out,    N=in ] = dyᵀ (128×1 tiles, transposed) · xᵀ (128×1, transposed)
// A's tiles must be one row high; B's are one row high or square; both use the same K tile.
#include <cstdint>

#include "kernels/fp8_quantize.h"

namespace baleine::kernels {

// How the sum over K is carried out.
struct Fp8Accumulation {
  // Mantissa bits kept by the accumulator that sums products between promotions: 23 is FP32
  // (exact emulation). DeepSeek-V3 §3.5.2 measured about 14 on H800 tensor cores; fewer bits
  // are truncated (rounded toward zero) after every addition, as that hardware does.
  int mantissa_bits = 23;
  // Products summed in that accumulator before the partial is promoted into FP32; a multiple
  // of the K tile. Equal to the tile (the recipe; 128 is DeepSeek-V3's tile): the partial sums
  // unscaled products and is multiplied by the tile's two scales at promotion. A larger
  // multiple spans tiles with different scales, so each product is scaled (and rounded to FP32)
  // as it enters the accumulator, and the partial is promoted as it is. 0 = never promote: the
  // whole of K runs in the limited accumulator (scaled products), which is what fine-grained
  // promotion exists to avoid. {23, the tile} is exact mode, the fast path training runs;
  // every other setting runs a slow scalar loop, meant for accuracy experiments.
  int64_t promote_every = 128;
};

// C [M, N] = A·Bᵀ (or C += A·Bᵀ when accumulate). M = a.rows, N = b.rows, K = a.cols = b.cols.
template <typename T>
void fp8_gemm_tn(const Fp8View& a, const Fp8View& b, T* c, bool accumulate,
                 const Fp8Accumulation& accumulation = {});

// The same product in double from the dequantized operands: the reference tests compare with.
void fp8_gemm_tn_reference(const Fp8View& a, const Fp8View& b, double* c);

}  // namespace baleine::kernels
