#pragma once
// Dense matrix products for the CPU backend. Row-major throughout.
// A Linear layer stores W as [out, in] (like torch.nn.Linear), so y = x·Wᵀ.
// The backward is split in two, as pipeline schedules need: B (input gradient) and W (weight
// gradient) can run at different times.
//
// Convention for every kernel in kernels/: input gradients are OVERWRITTEN, parameter
// gradients are ACCUMULATED (+=), so micro-batches accumulate into the same gradient buffer.
#include <cstdint>

namespace baleine::kernels {

// C[M,N] = alpha · op(A) · op(B) + beta · C.  op(A) is [M,K]: A is stored [M,K] (row stride lda)
// when !trans_a, or [K,M] when trans_a; likewise op(B) is [K,N]: B stored [K,N] or, when
// trans_b, [N,K]. beta == 0 ignores C's previous contents (NaNs included); alpha == 0 never
// reads A or B (BLAS semantics). Parallel (OpenMP); bit-identical for any thread count.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// y[M,N] = x[M,K] · w[N,K]ᵀ
template <typename T>
void linear_forward(const T* x, const T* w, T* y, int64_t M, int64_t K, int64_t N);
// dx[M,K] = dy[M,N] · w[N,K]            (overwrites dx)
template <typename T>
void linear_backward_input(const T* dy, const T* w, T* dx, int64_t M, int64_t K, int64_t N);
// dw[N,K] += dy[M,N]ᵀ · x[M,K]          (accumulates into dw)
template <typename T>
void linear_backward_weight(const T* dy, const T* x, T* dw, int64_t M, int64_t K, int64_t N);

}  // namespace baleine::kernels
