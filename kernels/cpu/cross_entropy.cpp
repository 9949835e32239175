// Softmax cross-entropy, fused: loss_r = lse_r − logits[r, target_r] with
// lse_r = m + log Σ_j exp(logits[r, j] − m), m = max_j logits[r, j] (subtracting the max keeps
// every exponent ≤ 0, so nothing overflows). The backward re-forms softmax = exp(logit − lse)
// from the saved lse instead of keeping an [n, vocab] probability tensor.
// Per-row losses are summed in row order in double, so the mean does not depend on the thread
// count.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel_grain.h"
#include "kernels/cpu/thread_scratch.h"
#include "kernels/cpu/vector_exp.h"

namespace baleine::kernels {

template <typename T>
double cross_entropy_forward(const T* logits, const int32_t* targets, T* lse, int64_t n,
                             int64_t vocab) {
  if (n <= 0) return 0.0;
  struct RowLosses;
  double* row_loss = thread_scratch<RowLosses, double>(static_cast<size_t>(n));
#pragma omp parallel for schedule(static) if (n * vocab > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const T* row = logits + r * vocab;
    T max_logit = row[0];
    for (int64_t j = 1; j < vocab; ++j) max_logit = std::max(max_logit, row[j]);
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < vocab; ++j) sum += double(vector_exp(row[j] - max_logit));
    const double row_lse = double(max_logit) + std::log(sum);
    lse[r] = T(row_lse);
    row_loss[r] = row_lse - double(row[targets[r]]);
  }
  double total = 0;
  for (int64_t r = 0; r < n; ++r) total += row_loss[r];
  return total / double(n);
}

template <typename T>
void cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T scale,
                            T* dlogits, int64_t n, int64_t vocab) {
#pragma omp parallel for schedule(static) if (n * vocab > kParallelGrain)
  for (int64_t r = 0; r < n; ++r) {
    const T* row = logits + r * vocab;
    T* grad = dlogits + r * vocab;
    const T row_lse = lse[r];
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) grad[j] = scale * vector_exp(row[j] - row_lse);
    grad[targets[r]] -= scale;
  }
}

template double cross_entropy_forward<float>(const float*, const int32_t*, float*, int64_t,
                                             int64_t);
template double cross_entropy_forward<double>(const double*, const int32_t*, double*, int64_t,
                                              int64_t);
template void cross_entropy_backward<float>(const float*, const int32_t*, const float*, float,
                                            float*, int64_t, int64_t);
template void cross_entropy_backward<double>(const double*, const int32_t*, const double*,
                                             double, double*, int64_t, int64_t);

}  // namespace baleine::kernels
