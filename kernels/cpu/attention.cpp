// Causal scaled dot-product attention (Vaswani et al. 2017, eq. 1) with the probabilities
// materialised, per (batch, head):
//   S = q·kᵀ / sqrt(D) (masked above the diagonal),  P = softmax_rows(S),  out = P·v.
// Backward (with dO the output gradient):
//   dv = Pᵀ·dO,  dP = dO·vᵀ,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),  dq = dS·k / sqrt(D),
//   dk = dSᵀ·q / sqrt(D).
// q, k, v are [batch, seq, heads, D]: one head's rows are D values with a stride of heads·D,
// which gemm takes directly as its leading dimension, so nothing is copied.
// The (batch, head) pairs run in parallel; the gemm calls inside are then single-threaded
// (nested regions are inactive), and every output slice is written by one thread. With fewer
// pairs than threads the pairs run one after another and each gemm uses all the threads.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

#include "kernels/gemm.h"

namespace baleine::kernels {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* probs, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim) {
  const int64_t row_stride = heads * head_dim;
  const T scale = T(1.0 / std::sqrt(double(head_dim)));
#pragma omp parallel for schedule(static) if (batch * heads >= omp_get_max_threads())
  for (int64_t bh = 0; bh < batch * heads; ++bh) {
    const int64_t b = bh / heads, h = bh % heads;
    const int64_t offset = b * seq * row_stride + h * head_dim;
    T* p = probs + bh * seq * seq;
    // Full S x S scores (the upper triangle is computed and then discarded: the gemm is fast
    // enough that skipping it is not worth a triangular kernel at seq <= 512).
    gemm<T>(false, true, seq, seq, head_dim, scale, q + offset, row_stride, k + offset,
            row_stride, T(0), p, seq);
    for (int64_t i = 0; i < seq; ++i) {
      T* row = p + i * seq;
      // Softmax over the causal prefix 0..i, max-subtracted for stability.
      T max_score = row[0];
      for (int64_t j = 1; j <= i; ++j) max_score = std::max(max_score, row[j]);
      double sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        row[j] = std::exp(row[j] - max_score);
        sum += double(row[j]);
      }
      const T inv = T(1.0 / sum);
      for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
      for (int64_t j = i + 1; j < seq; ++j) row[j] = T(0);
    }
    gemm<T>(false, false, seq, head_dim, seq, T(1), p, seq, v + offset, row_stride, T(0),
            out + offset, row_stride);
  }
}

template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        T* dq, T* dk, T* dv, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim) {
  const int64_t row_stride = heads * head_dim;
  const T scale = T(1.0 / std::sqrt(double(head_dim)));
#pragma omp parallel if (batch * heads >= omp_get_max_threads())
  {
    // One S x S scratch per thread for dP, turned into dS in place.
    std::vector<T> dscores(size_t(seq * seq));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < batch * heads; ++bh) {
      const int64_t b = bh / heads, h = bh % heads;
      const int64_t offset = b * seq * row_stride + h * head_dim;
      const T* p = probs + bh * seq * seq;
      T* ds = dscores.data();
      gemm<T>(true, false, seq, head_dim, seq, T(1), p, seq, dout + offset, row_stride, T(0),
              dv + offset, row_stride);
      gemm<T>(false, true, seq, seq, head_dim, T(1), dout + offset, row_stride, v + offset,
              row_stride, T(0), ds, seq);
      // Softmax backward per row; P is zero above the diagonal, so dS is too.
      for (int64_t i = 0; i < seq; ++i) {
        const T* prow = p + i * seq;
        T* drow = ds + i * seq;
        double weighted = 0;
        for (int64_t j = 0; j <= i; ++j) weighted += double(prow[j]) * double(drow[j]);
        const T w = T(weighted);
        for (int64_t j = 0; j <= i; ++j) drow[j] = prow[j] * (drow[j] - w);
        for (int64_t j = i + 1; j < seq; ++j) drow[j] = T(0);
      }
      gemm<T>(false, false, seq, head_dim, seq, scale, ds, seq, k + offset, row_stride, T(0),
              dq + offset, row_stride);
      gemm<T>(true, false, seq, head_dim, seq, scale, ds, seq, q + offset, row_stride, T(0),
              dk + offset, row_stride);
    }
  }
}

template void attention_forward<float>(const float*, const float*, const float*, float*, float*,
                                       int64_t, int64_t, int64_t, int64_t);
template void attention_forward<double>(const double*, const double*, const double*, double*,
                                        double*, int64_t, int64_t, int64_t, int64_t);
template void attention_backward<float>(const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, float*, int64_t, int64_t,
                                        int64_t, int64_t);
template void attention_backward<double>(const double*, const double*, const double*,
                                         const double*, const double*, double*, double*,
                                         double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace baleine::kernels
