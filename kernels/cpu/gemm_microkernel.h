#pragma once
// The innermost piece of the blocked GEMM (kernels/cpu/gemm.cpp): an MR x NR tile of C held in
// registers while kc rank-1 updates stream past it, then
//   C[0:m, 0:n] = alpha · tile + beta · C      (m <= MR, n <= NR; beta == 0 never reads C).
// B comes packed, [kc][NR] (one k's NR values adjacent, zero-padded past n). A is read where it
// lies, through an ATile: row i's value at step k is rows[i][k · k_stride]. That covers A stored
// [M, K] (k_stride 1) and stored [K, M] (k_stride lda) without a packing pass, which for the
// small K and N of a Linear in a small model costs as much as the products themselves. Rows
// past m point at row m - 1: they are computed and never stored.
//
// Every element of the tile is computed the same way wherever it sits (acc = fma(a, b, acc)
// for k ascending from zero, then one alpha/beta step), so a row of C does not depend on which
// other rows share its tile, its block or its thread: results are bit-identical for any
// thread count and any M partition, which the expert-parallel equivalence tests rely on.
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace baleine::kernels::detail {

// The source lines of the next B panel, for a micro-kernel to prefetch while it runs: a thread
// packing panels one at a time (gemm.cpp) then finds them in cache instead of waiting on
// memory for each. issue() prefetches one line; the kernel calls it every mask + 1 k steps, so
// that the lines spread over the current panel's tiles.
struct PanelPrefetch {
  const char* row = nullptr;  // the current row's first byte
  int64_t stride = 0;         // bytes from one row to the next
  int64_t lines_per_row = 0, rows_left = 0, line = 0;
  int64_t mask = 0;
  void issue() {
    if (rows_left == 0) return;
    __builtin_prefetch(row + line * 64, 0, 3);
    if (++line == lines_per_row) {
      line = 0;
      row += stride;
      --rows_left;
    }
  }
};

// Starts fetching, for writing, the lines of C's m x n tile at c before a kernel's k loop, so
// that a C out of cache (a weight gradient accumulated in place: each expert's is touched once
// per micro-batch) arrives during the products instead of stalling the stores at the end.
template <typename T>
inline void prefetch_c_tile(T* c, int64_t ldc, int64_t m, int64_t n) {
  for (int64_t i = 0; i < m; ++i) {
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + n - 1, 1, 3);
  }
}

template <typename T, int64_t MR>
struct ATile {
  const T* rows[MR];
  int64_t k_stride;
  // The MR rows starting at op(A)'s row i0, of which m (>= 1) exist, beginning at k = p0.
  ATile(bool trans_a, const T* A, int64_t lda, int64_t i0, int64_t m, int64_t p0) {
    const int64_t row_stride = trans_a ? 1 : lda;
    k_stride = trans_a ? lda : 1;
    const T* first = A + (trans_a ? p0 * lda + i0 : i0 * lda + p0);
    for (int64_t i = 0; i < MR; ++i) rows[i] = first + (i < m ? i : m - 1) * row_stride;
  }
};

template <typename T>
struct MicroKernel {
  // Portable version: constant trip counts the compiler can unroll and vectorise.
  static constexpr int64_t MR = 6, NR = 16;
  static void run(int64_t kc, const ATile<T, MR>& a, const T* __restrict b, T* __restrict c,
                  int64_t ldc, int64_t m, int64_t n, T alpha, T beta,
                  PanelPrefetch* next_panel = nullptr) {
    prefetch_c_tile(c, ldc, m, n);
    T acc[MR][NR] = {};
    for (int64_t k = 0, ak = 0; k < kc; ++k, ak += a.k_stride, b += NR) {
      if (next_panel && (k & next_panel->mask) == 0) next_panel->issue();
      for (int64_t i = 0; i < MR; ++i) {
        const T ai = a.rows[i][ak];
        for (int64_t j = 0; j < NR; ++j) acc[i][j] = fused_multiply_add(ai, b[j], acc[i][j]);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        T& out = c[i * ldc + j];
        // beta == 0 must not read C: it may hold NaNs or uninitialised memory.
        out = beta == T(0) ? alpha * acc[i][j] : fused_multiply_add(beta, out, alpha * acc[i][j]);
      }
    }
  }
  static T fused_multiply_add(T x, T y, T z) { return __builtin_fma(x, y, z); }
};

#if defined(__AVX512F__)
// FP32 with AVX-512: NR = 32 is two zmm registers per row, MR = 8 rows make 16 accumulators.
// Each k then costs 2 loads of b, 8 broadcasts of a and 16 independent FMAs: enough chains to
// cover the FMA latency (4 cycles) on two FMA pipes, with registers left for A's row pointers
// to stay in registers too. Measured on the 2-core Zen 4 here (best of 7, one thread, peak
// 117 GFLOP/s): 8 x 32 beat 6 x 32 and 12 x 32 on the model's shapes, e.g. 256x96x96 at
// ~100 GFLOP/s and 1024^3 at ~90.
template <>
struct MicroKernel<float> {
  static constexpr int64_t MR = 8, NR = 32;
  static void run(int64_t kc, const ATile<float, MR>& a, const float* __restrict b,
                  float* __restrict c, int64_t ldc, int64_t m, int64_t n, float alpha,
                  float beta, PanelPrefetch* next_panel = nullptr) {
    // Two copies of the loop: the one without prefetches has no test in it.
    if (next_panel)
      run_loop<true>(kc, a, b, c, ldc, m, n, alpha, beta, next_panel);
    else
      run_loop<false>(kc, a, b, c, ldc, m, n, alpha, beta, nullptr);
  }

 private:
  template <bool kPrefetch>
  static void run_loop(int64_t kc, const ATile<float, MR>& a, const float* __restrict b,
                       float* __restrict c, int64_t ldc, int64_t m, int64_t n, float alpha,
                       float beta, PanelPrefetch* next_panel) {
    prefetch_c_tile(c, ldc, m, n);
    __m512 lo[MR], hi[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
    for (int64_t k = 0, ak = 0; k < kc; ++k, ak += a.k_stride, b += NR) {
      if constexpr (kPrefetch) {
        if ((k & next_panel->mask) == 0) next_panel->issue();
      }
      const __m512 b_lo = _mm512_load_ps(b), b_hi = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(a.rows[i][ak]);
        lo[i] = _mm512_fmadd_ps(ai, b_lo, lo[i]);
        hi[i] = _mm512_fmadd_ps(ai, b_hi, hi[i]);
      }
    }
    // Columns past n are masked off: ragged edges need no scratch tile.
    const __mmask16 mask_lo = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
    const __mmask16 mask_hi =
        n >= 32 ? __mmask16(0xFFFF) : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      __m512 out_lo = _mm512_mul_ps(va, lo[i]), out_hi = _mm512_mul_ps(va, hi[i]);
      if (beta != 0.0f) {
        out_lo = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask_lo, row), out_lo);
        out_hi = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask_hi, row + 16), out_hi);
      }
      _mm512_mask_storeu_ps(row, mask_lo, out_lo);
      _mm512_mask_storeu_ps(row + 16, mask_hi, out_hi);
    }
  }
};
#endif

}  // namespace baleine::kernels::detail
