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
// The threads split the (ic, jr, ir) tiles into equal contiguous runs (see gemm()).
// B is packed for a whole span of K at once (all of K unless that is very large), each thread
// packing its share of the panels, so the threads meet at one barrier per span instead of two
// per KC block. Packing B does its transpose and pads ragged columns with zeros, so the B
// loads of the hot loop are aligned and unit-stride. A stored [M, K] is NOT packed: the
// micro-kernel broadcasts A's values one at a time, so reading them in place costs nothing
// more (kernels/cpu/gemm_microkernel.h), and for a Linear of a small model (K, N ~ 100) the
// packing pass cost as much as a third of the products. A stored [K, M] (the weight
// gradient's dyᵀ) is packed, one MR-row tile at a time into per-thread scratch, the first time
// a thread uses the tile in a block: read in place, each k of a tile is a new row of A, a
// layer's width apart, and in a cpu-large training step the weight gradients ran at ~160
// GFLOP/s against ~190 for the other products. The span and the A tiles together made a
// cpu-large step ~3% faster (steps alternating between the two versions in one run); KC of
// 128, 192 or 512, packing A stored [M, K] too, a dynamic split of the tiles and copying B
// row by row were each slower.
//
// Determinism: every C element is owned by exactly one thread and is summed over k in the same
// order (pc blocks in sequence, k ascending inside a block) whatever the thread count, so the
// result is bit-identical for any number of threads.
#include "kernels/gemm.h"

#include "kernels/cpu/gemm_microkernel.h"
#include "kernels/cpu/gemm_pack_avx512.h"
#include "kernels/cpu/thread_scratch.h"

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
  // At most this many packed B elements (16 MiB of floats) per span of K.
  static constexpr int64_t kMaxPackedB = int64_t(1) << 22;
  static_assert(MC % MR == 0, "an A block is whole micro-panels");
  static_assert(MC / MR <= 32, "a block's tiles fit the 32-bit packed-tile mask");
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

// Packs micro-panels [pf, pl) of op(B)[p0 : p0+kc, j0 : j0+nc], each as [kc][NR] at
// dst + panel · kc · NR, zero-padding the columns past nc.
template <typename T>
void pack_b_block(bool trans_b, const T* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t pf, int64_t pl, T* dst) {
  constexpr int64_t NR = Blocking<T>::NR;
  for (int64_t panel = pf; panel < pl; ++panel) {
    const int64_t jp = panel * NR, cols = std::min(NR, nc - jp);
    T* out = dst + panel * kc * NR;
    if (!trans_b) {
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = B + (p0 + k) * ldb + j0 + jp;
        for (int64_t c = 0; c < cols; ++c) out[k * NR + c] = src[c];
        for (int64_t c = cols; c < NR; ++c) out[k * NR + c] = T(0);
      }
      continue;
    }
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && NR == 32) {
      detail::pack_transposed_panel_32(B + (j0 + jp) * ldb + p0, ldb, kc, cols, out);
      continue;
    }
#endif
    for (int64_t c = 0; c < NR; ++c) {
      if (c >= cols) {
        for (int64_t k = 0; k < kc; ++k) out[k * NR + c] = T(0);
      } else {
        const T* src = B + (j0 + jp + c) * ldb + p0;
        for (int64_t k = 0; k < kc; ++k) out[k * NR + c] = src[k];
      }
    }
  }
}

// Packs rows [i, i + m) of op(A)[:, p0 : p0+kc] for A stored [K, M] as one tile [kc][MR]
// (what an ATile with k_stride MR reads). Rows past m repeat row m - 1, as ATile's do: they are
// computed and never stored.
template <typename T>
void pack_a_tile_transposed(const T* A, int64_t lda, int64_t p0, int64_t kc, int64_t i,
                            int64_t m, T* dst) {
  constexpr int64_t MR = Blocking<T>::MR;
  const T* src = A + p0 * lda + i;
  if (m == MR) {
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t r = 0; r < MR; ++r) dst[k * MR + r] = src[k * lda + r];
  } else {
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t r = 0; r < MR; ++r) dst[k * MR + r] = src[k * lda + std::min(r, m - 1)];
  }
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
  const int64_t nc_padded = round_up(std::min(N, Bl::NC), Bl::NR);
  // The K rows packed at once: all of K, or as many whole KC blocks as kMaxPackedB allows.
  const int64_t k_span =
      K * nc_padded <= Bl::kMaxPackedB
          ? K
          : std::max<int64_t>(Bl::KC, Bl::kMaxPackedB / nc_padded / Bl::KC * Bl::KC);
  T* b_pack = packed_b_buffer<T>(k_span * nc_padded);
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
    struct PackedATag {};
    T* a_pack = trans_a ? thread_scratch<PackedATag, T>(Bl::MC * Bl::KC) : nullptr;

    for (int64_t j0 = 0; j0 < N; j0 += Bl::NC) {
      const int64_t nc = std::min(Bl::NC, N - j0);
      const int64_t b_panels = ceil_div(nc, Bl::NR);
      const int64_t units = tiles * b_panels;
      // A thread owns the same tiles in every K block, so it alone orders their updates: the
      // blocks of a span need no barrier between them.
      const int64_t first = units * id / threads, last = units * (id + 1) / threads;
      // The B panels this thread packs.
      const int64_t pf = b_panels * id / threads, pl = b_panels * (id + 1) / threads;
      for (int64_t s0 = 0; s0 < K; s0 += k_span) {
        const int64_t span = std::min(k_span, K - s0);
        // Every KC block of the span: this thread's panels of it, at (p0 - s0) · nc_padded.
        for (int64_t p0 = s0; p0 < s0 + span; p0 += Bl::KC)
          pack_b_block(trans_b, B, ldb, p0, std::min(Bl::KC, K - p0), j0, nc, pf, pl,
                       b_pack + (p0 - s0) * nc_padded);
        // The span is complete before anyone reads it.
#pragma omp barrier
        for (int64_t p0 = s0; p0 < s0 + span; p0 += Bl::KC) {
          const int64_t kc = std::min(Bl::KC, K - p0);
          const T* b_block = b_pack + (p0 - s0) * nc_padded;
          // Later K blocks add onto what the first one wrote.
          const T beta_block = p0 == 0 ? beta : T(1);
          int64_t unit = 0;
          for (int64_t i0 = 0; i0 < M && unit < last; i0 += Bl::MC) {
            const int64_t rows = std::min(Bl::MC, M - i0);
            const int64_t block_tiles = ceil_div(rows, Bl::MR);
            if (unit + block_tiles * b_panels <= first) {  // a block of other threads' tiles
              unit += block_tiles * b_panels;
              continue;
            }
            uint32_t tiles_packed = 0;  // bit t: tile t of this block is in a_pack (trans_a)
            for (int64_t jr = 0; jr < nc; jr += Bl::NR) {
              const T* b_panel = b_block + (jr / Bl::NR) * kc * Bl::NR;
              for (int64_t ir = 0; ir < rows; ir += Bl::MR, ++unit) {
                if (unit < first || unit >= last) continue;
                const int64_t m = std::min(Bl::MR, rows - ir);
                T* c = C + (i0 + ir) * ldc + j0 + jr;
                const int64_t n = std::min(Bl::NR, nc - jr);
                detail::ATile<T, Bl::MR> a(false, A, lda, i0 + ir, m, p0);
                if (trans_a) {
                  const int64_t t = ir / Bl::MR;
                  T* a_tile = a_pack + t * Bl::KC * Bl::MR;
                  if (!(tiles_packed >> t & 1u)) {
                    pack_a_tile_transposed(A, lda, p0, kc, i0 + ir, m, a_tile);
                    tiles_packed |= 1u << t;
                  }
                  // The packed tile is [kc][MR]: op(A) stored transposed with lda = MR.
                  a = detail::ATile<T, Bl::MR>(true, a_tile, Bl::MR, 0, Bl::MR, 0);
                }
                detail::MicroKernel<T>::run(kc, a, b_panel, c, ldc, m, n, alpha, beta_block);
              }
            }
          }
        }
        // Nobody repacks B while another thread still reads it.
        if (s0 + span < K || j0 + nc < N) {
#pragma omp barrier
        }
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
