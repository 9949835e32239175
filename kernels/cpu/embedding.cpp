// Token embedding lookup and its scatter-add backward.
//
// The backward is a scatter with collisions (repeated ids). Instead of atomics, which make the
// sum order depend on scheduling, the threads split the embedding COLUMNS: each thread owns a
// slice of every table row and walks the tokens in order, so each element is summed in token
// order whatever the thread count (bit-identical results).
#include "kernels/embedding.h"

#include <algorithm>
#include <cstring>

namespace baleine::kernels {

template <typename T>
void embedding_forward(const int32_t* tokens, const T* table, T* out, int64_t n_tokens,
                       int64_t dim) {
#pragma omp parallel for schedule(static) if (n_tokens * dim > (1 << 15))
  for (int64_t t = 0; t < n_tokens; ++t)
    std::memcpy(out + t * dim, table + int64_t(tokens[t]) * dim, sizeof(T) * size_t(dim));
}

template <typename T>
void embedding_backward(const int32_t* tokens, const T* dout, T* dtable, int64_t n_tokens,
                        int64_t dim) {
  // Column slices of 16 elements: a whole cache line of floats per token and thread.
  constexpr int64_t kSlice = 16;
  const int64_t slices = (dim + kSlice - 1) / kSlice;
#pragma omp parallel for schedule(static) if (n_tokens * dim > (1 << 15))
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t c0 = s * kSlice, c1 = std::min(dim, c0 + kSlice);
    for (int64_t t = 0; t < n_tokens; ++t) {
      T* row = dtable + int64_t(tokens[t]) * dim;
      const T* grad = dout + t * dim;
      for (int64_t c = c0; c < c1; ++c) row[c] += grad[c];
    }
  }
}

template void embedding_forward<float>(const int32_t*, const float*, float*, int64_t, int64_t);
template void embedding_forward<double>(const int32_t*, const double*, double*, int64_t,
                                        int64_t);
template void embedding_backward<float>(const int32_t*, const float*, float*, int64_t, int64_t);
template void embedding_backward<double>(const int32_t*, const double*, double*, int64_t,
                                         int64_t);

}  // namespace baleine::kernels
