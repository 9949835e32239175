// Cache-blocked, OpenMP-parallel GEMM for the CPU backend, and the Linear layer built on it.
//
// The loop structure follows Goto & van de Geijn, "Anatomy of High-Performance Matrix
// Multiplication" (ACM TOMS 2008), as organised by BLIS (Van Zee & van de Geijn, ACM TOMS 2015):
//   for jc in N by NC:              a block of op(B) columns
//     for pc in K by KC:            packed B block [KC x NC] is shared by all threads (L3)
//       for ic in M by MC:          the rows of A [MC x KC] stay in L2
//         for jr in NC by NR:       one B micro-panel [KC x NR] stays in L1 ...
//           for ir in MC by MR:     ... while MR rows of A stream past it
//             micro-kernel: an MR x NR tile of C held in registers, KC rank-1 updates.
// Threads split the work one of two ways (see gemm()): by whole B panels when those divide
// evenly among them (each thread owns columns of C and packs its own panels), otherwise into
// equal contiguous runs of the (ic, jr, ir) tiles over a B block they pack together.
// Packing B does its transpose (both trans_b cases share one kernel) and pads ragged columns
// with zeros, so the B loads of the hot loop are aligned and unit-stride. A is NOT packed: the
// micro-kernel broadcasts A's values one at a time, so reading them in place costs nothing
// more (kernels/cpu/gemm_microkernel.h), and for a Linear of a small model (K, N ~ 100) the
// packing pass cost as much as a third of the products.
//
// Memory: a small product on one thread (an expert's rows, in a loop that runs experts in
// parallel) spends much of its time waiting for B, a weight that has been out of cache since
// the last micro-batch: 128x512x256 ran at 92 GFLOP/s with its weight cold against 108 hot.
// So a thread that packs its own panels (alone, or owning columns) packs each just before its
// first use, and its micro-kernels prefetch the next panel's source lines meanwhile, one line
// every few k steps spread over the panel's tiles (cold: 81 -> 106 GFLOP/s in one run). Every
// micro-kernel also prefetches its C tile before the k loop, for the weight gradients
// accumulated in place (cold C: 76 -> 86). In cpu-large steps the two together gained ~4-5%
// (steps alternating in one run).
//
// Two changes were tried and taken out again: packing B for all of K at once (one barrier per
// span instead of two per KC block) and packing A tile by tile when it is stored [K, M]. Timed
// against this version with calls alternating in one process (the only comparison that holds
// still on this VM), on the cpu-large shapes, they were 1-3% slower on plain products and
// 23-40% slower on weight gradients.
//
// Determinism: every C element is owned by exactly one thread and is summed over k in the same
// order (pc blocks in sequence, k ascending inside a block) whatever the thread count, so the
// result is bit-identical for any number of threads.
#include "kernels/gemm.h"

#include "kernels/cpu/gemm_microkernel.h"
#include "kernels/cpu/gemm_pack_avx512.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <type_traits>

namespace baleine::kernels {
namespace {

// Register tile MR x NR from the micro-kernel (gemm_microkernel.h). KC = 256 keeps a float B
// micro-panel (256 x 32 x 4 B = 32 KiB) about L1-sized; MC x KC of A (~120 KiB) sits in L2.
template <typename T>
struct Blocking {
  static constexpr int64_t MR = detail::MicroKernel<T>::MR, NR = detail::MicroKernel<T>::NR;
  static constexpr int64_t KC = 256, MC = 120, NC = 4096;
  static_assert(MC % MR == 0, "an A block is whole micro-panels");
};

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The packed B block, one per calling thread (a gemm inside another thread's parallel region
// has its own), kept between calls so the hot path does not allocate.
template <typename T>
T* packed_b_buffer(int64_t elements) {
  struct Buffer {
    T* data = nullptr;
    int64_t capacity = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffer;
  if (buffer.capacity < elements) {
    std::free(buffer.data);
    // 64-byte alignment: one cache line, and the widest vector load.
    const size_t bytes = static_cast<size_t>(round_up(elements * int64_t(sizeof(T)), 64));
    buffer.data = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (buffer.data == nullptr) throw std::bad_alloc();
    buffer.capacity = elements;
  }
  return buffer.data;
}

// Packs micro-panel `panel` of op(B)[p0 : p0+kc, j0 : j0+nc] as [kc][NR] into its slot of dst,
// zero-padding the columns past nc.
template <typename T>
void pack_b_panel(bool trans_b, const T* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t panel, T* dst) {
  constexpr int64_t NR = Blocking<T>::NR;
  const int64_t jp = panel * NR;
  const int64_t cols = std::min(NR, nc - jp);
  // Slots a full KC apart: a panel of a short last K block stays in its own slot, which only
  // the thread that packs it reads when threads own panels.
  dst += panel * Blocking<T>::KC * NR;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && NR == 32) {
    if (trans_b) {
      detail::pack_transposed_panel_32(B + (j0 + jp) * ldb + p0, ldb, kc, cols, dst);
      return;
    }
  }
#endif
  if (trans_b) {
    for (int64_t c = 0; c < NR; ++c) {
      if (c >= cols) {
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = T(0);
      } else {
        const T* src = B + (j0 + jp + c) * ldb + p0;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + c] = src[k];
      }
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = B + (p0 + k) * ldb + j0 + jp;
      for (int64_t c = 0; c < cols; ++c) dst[k * NR + c] = src[c];
      for (int64_t c = cols; c < NR; ++c) dst[k * NR + c] = T(0);
    }
  }
}

// The lines that packing the B panel of columns [j, j + cols) for k in [p0, p0 + kc) reads,
// to be prefetched over `iterations` micro-kernel k steps (one line every power-of-two steps).
template <typename T>
detail::PanelPrefetch panel_source(bool trans_b, const T* B, int64_t ldb, int64_t p0,
                                   int64_t kc, int64_t j, int64_t cols, int64_t iterations) {
  constexpr int64_t kLine = 64, size = int64_t(sizeof(T));
  detail::PanelPrefetch p;
  p.stride = ldb * size;
  // A row's span may start mid-line: one line more than its length covers it.
  if (trans_b) {  // cols rows of B, each kc long
    p.row = reinterpret_cast<const char*>(B + j * ldb + p0);
    p.lines_per_row = ceil_div(kc * size, kLine) + 1;
    p.rows_left = cols;
  } else {  // kc rows of B, each cols long
    p.row = reinterpret_cast<const char*>(B + p0 * ldb + j);
    p.lines_per_row = ceil_div(cols * size, kLine) + 1;
    p.rows_left = kc;
  }
  const int64_t lines = p.lines_per_row * p.rows_left;
  int64_t every = 1;
  while (every * 2 * lines <= iterations) every *= 2;
  p.mask = every - 1;
  return p;
}

// C = beta · C, for the degenerate cases (K == 0 or alpha == 0) where no product is formed.
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

// Below this many flops the fork/join of a parallel region costs more than it saves.
constexpr double kParallelMinFlops = 2e5;

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Bl = Blocking<T>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int64_t nc_max = std::min(N, Bl::NC);
  T* b_pack = packed_b_buffer<T>(Bl::KC * round_up(nc_max, Bl::NR));
  const bool go_parallel = 2.0 * double(M) * double(N) * double(K) >= kParallelMinFlops;

#pragma omp parallel if (go_parallel)
  {
    // The work is MR x NR tiles of C, numbered block by block (MC rows), panel by panel inside
    // a block, tile by tile inside a panel, and each thread takes one contiguous run of that
    // numbering. Equal runs balance the threads to a tile even when M is a handful of tiles
    // (an expert's rows), and a run keeps the blocked order's locality: one B panel in L1
    // while the block's rows of A (MC x KC, in L2) stream past it. The team size is read
    // here: inside another parallel region it is 1.
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t tiles = ceil_div(M, Bl::MR);

    for (int64_t j0 = 0; j0 < N; j0 += Bl::NC) {
      const int64_t nc = std::min(Bl::NC, N - j0);
      const int64_t b_panels = ceil_div(nc, Bl::NR);
      // Split by panels when they divide evenly: each thread then owns whole columns of C,
      // packs its own panels as it goes (like a lone thread) and meets the others only at the
      // end. Otherwise split the tiles into equal runs over a B block packed by all.
      const bool by_panels = threads > 1 && b_panels % threads == 0;
      const bool lazy = threads == 1 || by_panels;
      const int64_t pf = by_panels ? b_panels * id / threads : 0;
      const int64_t pl = by_panels ? b_panels * (id + 1) / threads : b_panels;
      const int64_t units = tiles * b_panels;
      const int64_t first = lazy ? 0 : units * id / threads;
      const int64_t last = lazy ? units : units * (id + 1) / threads;
      for (int64_t p0 = 0; p0 < K; p0 += Bl::KC) {
        const int64_t kc = std::min(Bl::KC, K - p0);
        // Later K blocks add onto what the first one wrote.
        const T beta_block = p0 == 0 ? beta : T(1);
        if (lazy) {
          pack_b_panel(trans_b, B, ldb, p0, kc, j0, nc, pf, b_pack);
        } else {
#pragma omp for schedule(static)
          for (int64_t panel = 0; panel < b_panels; ++panel)
            pack_b_panel(trans_b, B, ldb, p0, kc, j0, nc, panel, b_pack);
          // (implicit barrier: the B block is complete before anyone reads it)
        }
        int64_t unit = 0;  // tiles numbered block by block, panel by panel (for first/last)
        for (int64_t i0 = 0; i0 < M && unit < last; i0 += Bl::MC) {
          const int64_t rows = std::min(Bl::MC, M - i0);
          const int64_t block_tiles = ceil_div(rows, Bl::MR);
          if (unit + block_tiles * b_panels <= first) {  // a block of other threads' tiles
            unit += block_tiles * b_panels;
            continue;
          }
          unit += pf * block_tiles;
          for (int64_t panel = pf; panel < pl; ++panel) {
            const int64_t jr = panel * Bl::NR;
            const T* b_panel = b_pack + panel * Bl::KC * Bl::NR;
            // The first block is where a lazily packed panel meets its source for the first
            // time: prefetch the next panel's source, spread over this panel's tiles.
            const bool ahead = lazy && i0 == 0 && panel + 1 < pl;
            detail::PanelPrefetch next_panel;
            if (ahead)
              next_panel = panel_source(trans_b, B, ldb, p0, kc, j0 + jr + Bl::NR,
                                        std::min(Bl::NR, nc - jr - Bl::NR), block_tiles * kc);
            for (int64_t ir = 0; ir < rows; ir += Bl::MR, ++unit) {
              if (unit < first || unit >= last) continue;
              const int64_t m = std::min(Bl::MR, rows - ir);
              const detail::ATile<T, Bl::MR> a(trans_a, A, lda, i0 + ir, m, p0);
              detail::MicroKernel<T>::run(kc, a, b_panel, C + (i0 + ir) * ldc + j0 + jr, ldc, m,
                                          std::min(Bl::NR, nc - jr), alpha, beta_block,
                                          ahead ? &next_panel : nullptr);
            }
            if (ahead) pack_b_panel(trans_b, B, ldb, p0, kc, j0, nc, panel + 1, b_pack);
          }
          unit += (b_panels - pl) * block_tiles;
        }
        // Nobody repacks a shared B block while another thread still reads it (a thread
        // packing its own panels repacks only what it alone has read).
        if (!lazy) {
#pragma omp barrier
        }
      }
      // The next column block hands the panel slots out afresh.
      if (by_panels && j0 + nc < N) {
#pragma omp barrier
      }
    }
  }
}

// A Linear layer stores W as [out, in]; these are the three products of its forward and
// backward, each one gemm call.
template <typename T>
void linear_forward(const T* x, const T* w, T* y, int64_t M, int64_t K, int64_t N) {
  gemm<T>(false, true, M, N, K, T(1), x, K, w, K, T(0), y, N);
}

template <typename T>
void linear_backward_input(const T* dy, const T* w, T* dx, int64_t M, int64_t K, int64_t N) {
  gemm<T>(false, false, M, K, N, T(1), dy, N, w, K, T(0), dx, K);
}

template <typename T>
void linear_backward_weight(const T* dy, const T* x, T* dw, int64_t M, int64_t K, int64_t N) {
  gemm<T>(true, false, N, K, M, T(1), dy, N, x, K, T(1), dw, K);
}

#define BALEINE_INSTANTIATE_GEMM(T)                                                          \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                        int64_t, T, T*, int64_t);                                            \
  template void linear_forward<T>(const T*, const T*, T*, int64_t, int64_t, int64_t);        \
  template void linear_backward_input<T>(const T*, const T*, T*, int64_t, int64_t, int64_t); \
  template void linear_backward_weight<T>(const T*, const T*, T*, int64_t, int64_t, int64_t);
BALEINE_INSTANTIATE_GEMM(float)
BALEINE_INSTANTIATE_GEMM(double)
#undef BALEINE_INSTANTIATE_GEMM

}  // namespace baleine::kernels
