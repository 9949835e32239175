// Token permutation for a dropless MoE layer on the CPU (see kernels/moe_dispatch.h).
// Determinism: every output element is written by one loop iteration, and every sum runs in a
// fixed order (slot order, or row order), so results do not depend on the OpenMP thread count.
#include "kernels/moe_dispatch.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace baleine::kernels {

// A counting sort of the tokens·top_k assignments by expert. It is O(tokens·top_k) integer
// work, far below the GEMMs it feeds, so it stays serial: the stable scatter is then trivially
// in assignment (= token) order.
void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k, int64_t experts,
                        int32_t* expert_offsets, int32_t* row_token, int32_t* assignment_row) {
  const int64_t assignments = tokens * top_k;
  if (tokens < 0 || top_k <= 0 || experts <= 0 || assignments > INT32_MAX) {
    throw std::invalid_argument("build_expert_index: bad sizes tokens=" +
                                std::to_string(tokens) + " top_k=" + std::to_string(top_k) +
                                " experts=" + std::to_string(experts));
  }
  // Histogram into offsets[e + 1], then prefix-sum so offsets[e] is expert e's first row.
  std::fill(expert_offsets, expert_offsets + experts + 1, 0);
  for (int64_t a = 0; a < assignments; ++a) {
    const int32_t e = chosen[a];
    // A bad id here would scatter out of bounds below; it is a bug upstream (routing).
    if (e < 0 || e >= experts) {
      throw std::out_of_range("build_expert_index: assignment " + std::to_string(a) +
                              " names expert " + std::to_string(e) + " outside [0, " +
                              std::to_string(experts) + ")");
    }
    ++expert_offsets[e + 1];
  }
  for (int64_t e = 0; e < experts; ++e) expert_offsets[e + 1] += expert_offsets[e];
  // Scatter in assignment order (which makes the sort stable), using offsets[e] itself as
  // expert e's cursor: no scratch buffer; the shift below restores the offsets.
  for (int64_t a = 0; a < assignments; ++a) {
    const int32_t row = expert_offsets[chosen[a]]++;
    row_token[row] = static_cast<int32_t>(a / top_k);
    assignment_row[a] = row;
  }
  // Each offsets[e] now holds the old offsets[e + 1]; shift back.
  for (int64_t e = experts; e > 0; --e) expert_offsets[e] = expert_offsets[e - 1];
  expert_offsets[0] = 0;
}

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelElements = 1 << 15;

template <typename T>
void permute_tokens_forward(const T* x, const int32_t* row_token, T* xe, int64_t rows,
                            int64_t dim) {
#pragma omp parallel for schedule(static) if (rows * dim > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(x + int64_t(row_token[r]) * dim, dim, xe + r * dim);
  }
}

template <typename T>
void permute_tokens_backward(const T* dxe, const int32_t* row_token, T* dx, int64_t rows,
                             int64_t tokens, int64_t dim) {
  // Several rows add into one token, and only row_token (not its inverse) is given, so the
  // threads split the feature dimension instead of the rows: each dx element is then summed
  // by one thread in row order, with no atomics and no thread-count-dependent rounding.
  constexpr int64_t kColumnsPerBlock = 64;
  const int64_t blocks = (dim + kColumnsPerBlock - 1) / kColumnsPerBlock;
#pragma omp parallel for schedule(static) if (rows * dim > kParallelElements)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kColumnsPerBlock;
    const int64_t end = std::min(dim, begin + kColumnsPerBlock);
    for (int64_t t = 0; t < tokens; ++t) std::fill(dx + t * dim + begin, dx + t * dim + end, T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const T* source = dxe + r * dim;
      T* target = dx + int64_t(row_token[r]) * dim;
      for (int64_t c = begin; c < end; ++c) target[c] += source[c];
    }
  }
}

template <typename T>
void combine_forward(const T* ye, const T* weights, const int32_t* assignment_row, T* y,
                     int64_t tokens, int64_t top_k, int64_t dim) {
#pragma omp parallel for schedule(static) if (tokens * top_k * dim > kParallelElements)
  for (int64_t t = 0; t < tokens; ++t) {
    T* out = y + t * dim;
    std::fill(out, out + dim, T(0));
    for (int64_t j = 0; j < top_k; ++j) {
      const T w = weights[t * top_k + j];
      const T* expert_out = ye + int64_t(assignment_row[t * top_k + j]) * dim;
      for (int64_t c = 0; c < dim; ++c) out[c] += w * expert_out[c];
    }
  }
}

template <typename T>
void combine_backward(const T* dy, const T* ye, const T* weights, const int32_t* assignment_row,
                      T* dye, T* dweights, int64_t tokens, int64_t top_k, int64_t dim) {
  // Every sorted row belongs to exactly one assignment, so each dye row is written once.
#pragma omp parallel for schedule(static) if (tokens * top_k * dim > kParallelElements)
  for (int64_t t = 0; t < tokens; ++t) {
    const T* upstream = dy + t * dim;
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t row = assignment_row[t * top_k + j];
      const T w = weights[t * top_k + j];
      const T* expert_out = ye + row * dim;
      T* dexpert_out = dye + row * dim;
      double dot = 0;  // a dim-long dot product: accumulate in double for float inputs
      for (int64_t c = 0; c < dim; ++c) {
        dexpert_out[c] = w * upstream[c];
        dot += double(upstream[c]) * expert_out[c];
      }
      dweights[t * top_k + j] = T(dot);
    }
  }
}

#define BALEINE_INSTANTIATE_MOE_DISPATCH(T)                                                    \
  template void permute_tokens_forward<T>(const T*, const int32_t*, T*, int64_t, int64_t);    \
  template void permute_tokens_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t,    \
                                           int64_t);                                          \
  template void combine_forward<T>(const T*, const T*, const int32_t*, T*, int64_t, int64_t,  \
                                   int64_t);                                                  \
  template void combine_backward<T>(const T*, const T*, const T*, const int32_t*, T*, T*,     \
                                    int64_t, int64_t, int64_t);
BALEINE_INSTANTIATE_MOE_DISPATCH(float)
BALEINE_INSTANTIATE_MOE_DISPATCH(double)
#undef BALEINE_INSTANTIATE_MOE_DISPATCH

}  // namespace baleine::kernels
