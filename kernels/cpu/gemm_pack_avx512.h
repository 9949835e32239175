#pragma once
// Packing a transposed B panel for the FP32 GEMM with AVX-512: op(B) = Bᵀ with B stored [N, K]
// (a Linear's weight in x·Wᵀ, or the keys in q·kᵀ), so a panel's 32 columns are 32 rows of B,
// each contiguous in k, and the packed panel wants them interleaved, [k][32]. Element by
// element that is 32 scattered stores per k (measured: 6-9% of a training step). Here 16 rows
// x 16 k are loaded as 16 vectors, transposed in registers, and stored as 16 vectors.
//
// The 16 x 16 transpose: unpacklo/hi interleave pairs of rows, shuffle_ps completes 4 x 4
// transposes inside each 128-bit lane, and two rounds of shuffle_f32x4 move the lanes into
// place (the usual AVX-512 pattern, as in Intel's optimisation manual's transpose examples).
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>

// GCC 12 warns that the intrinsics' internal _mm512_undefined_ps() "may be used uninitialized"
// (its self-initialised placeholder for the unused merge operand): a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace baleine::kernels::detail {

// rows[c] holds row c's 16 consecutive k values; on return rows[k] holds column k's 16 values
// (row 0 first).
inline void transpose_16x16(__m512 rows[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);      // per lane: a0 b0 a1 b1
    t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);  // per lane: a2 b2 a3 b3
  }
  for (int i = 0; i < 16; i += 4) {
    // Rows i..i+3 of lane L's columns 4L..4L+3: u[i + j] holds column 4L + j.
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; ++j) {
    // u[j], u[4 + j], u[8 + j], u[12 + j]: columns j, 4 + j, 8 + j, 12 + j of rows 0-3, 4-7,
    // 8-11, 12-15, one column per lane.
    const __m512 even_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);       // cols j, 8+j
    const __m512 even_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    const __m512 odd_lo = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);        // cols 4+j, 12+j
    const __m512 odd_hi = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    rows[j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
    rows[8 + j] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD);
    rows[4 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
    rows[12 + j] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD);
  }
}

// dst[k * 32 + c] = src[c * ld + k] for k < kc, c < cols (<= 32); zero for c >= cols.
inline void pack_transposed_panel_32(const float* src, int64_t ld, int64_t kc, int64_t cols,
                                     float* dst) {
  __m512 block[16];
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int64_t depth = kc - k0 < 16 ? kc - k0 : 16;
    const __mmask16 k_mask = __mmask16((1u << depth) - 1);
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t c = 0; c < 16; ++c) {
        const int64_t column = half * 16 + c;
        block[c] = column < cols ? _mm512_maskz_loadu_ps(k_mask, src + column * ld + k0)
                                 : _mm512_setzero_ps();
      }
      transpose_16x16(block);
      for (int64_t k = 0; k < depth; ++k) _mm512_storeu_ps(dst + (k0 + k) * 32 + half * 16, block[k]);
    }
  }
}

}  // namespace baleine::kernels::detail

#pragma GCC diagnostic pop
#endif
