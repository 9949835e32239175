// Cache-blocked, OpenMP-parallel GEMM for the CPU backend, and the Linear layer built on it.
//
// The loop structure follows Goto & van de Geijn, "Anatomy of High-Performance Matrix
// Multiplication" (ACM TOMS 2008), as organised by BLIS (Van Zee & van de Geijn, ACM TOMS 2015):
//   for jc in N by NC:              a block of op(B) columns
//     for pc in K by KC:            packed B block [KC x NC] is shared by all threads (L3)
//       for ic in M by mc (parallel): each thread packs its own A block [mc x KC] (L2)
//         for jr in NC by NR:       one B micro-panel [KC x NR] stays in L1 ...
//           for ir in mc by MR:     ... while the A micro-panels stream past it
//             micro-kernel: an MR x NR tile of C held in registers, KC rank-1 updates.
// Packing does the transposes (all four trans_a/trans_b cases share one kernel), pads ragged
// edges with zeros (so the micro-kernel always has constant trip counts the compiler can fully
// unroll and vectorise), and makes every access of the hot loop unit-stride.
//
// Determinism: every C element is owned by exactly one thread and is summed over k in the same
// order (pc blocks in sequence, k ascending inside a block) whatever the thread count, so the
// result is bit-identical for any number of threads.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <new>

namespace baleine::kernels {
namespace {

// Register tile MR x NR: with AVX-512 an NR of 32 floats (16 doubles) is two vector registers,
// so a 6 x NR tile is 12 accumulators — enough independent FMA chains to hide the FMA latency
// while leaving registers for the B row and the A broadcast. KC = 256 keeps a float B
// micro-panel (256 x 32 x 4 B = 32 KiB) about L1-sized; MC x KC of A (~120 KiB) sits in L2.
template <typename T>
struct Blocking;
template <>
struct Blocking<float> {
  static constexpr int64_t MR = 6, NR = 32, KC = 256, MC = 120, NC = 4096;
};
template <>
struct Blocking<double> {
  static constexpr int64_t MR = 6, NR = 16, KC = 256, MC = 120, NC = 2048;
};

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Per-thread packing buffers, kept between calls so the hot path does not allocate. Slot 0 is
// the shared B block (owned by the calling thread), slot 1 a thread's private A block.
template <typename T>
T* scratch(int slot, int64_t elements) {
  struct Buffer {
    T* data = nullptr;
    int64_t capacity = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffers[2];
  Buffer& buffer = buffers[slot];
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

// Packs op(A)[i0 : i0+mc, p0 : p0+kc] as ceil(mc/MR) micro-panels, each [kc][MR] (the MR
// values of one k adjacent), zero-padding the rows past mc.
template <typename T>
void pack_a(bool trans_a, const T* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
            int64_t kc, T* dst) {
  constexpr int64_t MR = Blocking<T>::MR;
  for (int64_t ip = 0; ip < mc; ip += MR, dst += kc * MR) {
    const int64_t rows = std::min(MR, mc - ip);
    if (trans_a) {
      // Stored [K, M]: the MR values of one k are adjacent in memory; copy row by row.
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = A + (p0 + k) * lda + i0 + ip;
        for (int64_t r = 0; r < rows; ++r) dst[k * MR + r] = src[r];
        for (int64_t r = rows; r < MR; ++r) dst[k * MR + r] = T(0);
      }
      continue;
    }
    // Stored [M, K]: read each of the MR rows along k (unit stride), scatter into the panel.
    for (int64_t r = 0; r < MR; ++r) {
      const T* src = A + (i0 + ip + r) * lda + p0;
      if (r < rows) {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = src[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = T(0);
      }
    }
  }
}

// Packs micro-panel `panel` of op(B)[p0 : p0+kc, j0 : j0+nc] as [kc][NR], zero-padding the
// columns past nc.
template <typename T>
void pack_b_panel(bool trans_b, const T* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                  int64_t nc, int64_t panel, T* dst) {
  constexpr int64_t NR = Blocking<T>::NR;
  const int64_t jp = panel * NR;
  const int64_t cols = std::min(NR, nc - jp);
  dst += panel * kc * NR;
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

// C[0:m, 0:n] = alpha · (a-panel · b-panel) + beta · C, with m <= MR, n <= NR. The accumulator
// array has constant bounds, so the compiler keeps it in vector registers and turns the j loop
// into vector FMAs with a broadcast of a[i].
template <typename T>
void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c,
                  int64_t ldc, int64_t m, int64_t n, T alpha, T beta) {
  constexpr int64_t MR = Blocking<T>::MR, NR = Blocking<T>::NR;
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    for (int64_t i = 0; i < MR; ++i) {
      const T ai = a[i];
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  // beta == 0 must not read C: it may hold NaNs or uninitialised memory.
  if (m == MR && n == NR) {
    if (beta == T(0)) {
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) c[i * ldc + j] = alpha * acc[i][j];
    } else {
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) c[i * ldc + j] = alpha * acc[i][j] + beta * c[i * ldc + j];
    }
  } else {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] =
            beta == T(0) ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
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
  const int64_t nc_max = std::min(N, Bl::NC);
  T* b_pack = scratch<T>(0, Bl::KC * round_up(nc_max, Bl::NR));
  const bool go_parallel = 2.0 * double(M) * double(N) * double(K) >= kParallelMinFlops;

#pragma omp parallel if (go_parallel)
  {
    // Split M into a multiple of the team size of MR-aligned blocks, so the threads get equal
    // work (the team size is read here: inside another parallel region it is 1).
    const int64_t threads = omp_get_num_threads();
    const int64_t blocks = round_up(ceil_div(M, Bl::MC), threads);
    const int64_t mc = round_up(ceil_div(M, blocks), Bl::MR);
    T* a_pack = scratch<T>(1, mc * Bl::KC);

    for (int64_t j0 = 0; j0 < N; j0 += Bl::NC) {
      const int64_t nc = std::min(Bl::NC, N - j0);
      const int64_t b_panels = ceil_div(nc, Bl::NR);
      for (int64_t p0 = 0; p0 < K; p0 += Bl::KC) {
        const int64_t kc = std::min(Bl::KC, K - p0);
        // Later K blocks add onto what the first one wrote.
        const T beta_block = p0 == 0 ? beta : T(1);
#pragma omp for schedule(static)
        for (int64_t panel = 0; panel < b_panels; ++panel)
          pack_b_panel(trans_b, B, ldb, p0, kc, j0, nc, panel, b_pack);
        // (implicit barrier: the B block is complete before anyone reads it)
#pragma omp for schedule(static)
        for (int64_t i0 = 0; i0 < M; i0 += mc) {
          const int64_t rows = std::min(mc, M - i0);
          pack_a(trans_a, A, lda, i0, rows, p0, kc, a_pack);
          for (int64_t jr = 0; jr < nc; jr += Bl::NR) {
            const T* b_panel = b_pack + (jr / Bl::NR) * kc * Bl::NR;
            for (int64_t ir = 0; ir < rows; ir += Bl::MR) {
              micro_kernel(kc, a_pack + (ir / Bl::MR) * kc * Bl::MR, b_panel,
                           C + (i0 + ir) * ldc + j0 + jr, ldc, std::min(Bl::MR, rows - ir),
                           std::min(Bl::NR, nc - jr), alpha, beta_block);
            }
          }
        }
        // (implicit barrier: nobody repacks B while another thread still reads it)
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
