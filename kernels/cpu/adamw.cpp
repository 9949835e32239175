// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Algorithm 2), in
// the form torch.optim.AdamW computes it:
//   g = grad_scale · grad
//   m = β1·m + (1−β1)·g,   v = β2·v + (1−β2)·g²
//   param = param · (1 − lr·wd) − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
// The decay multiplies the parameter directly (decoupled) instead of being added to g, so it
// is not rescaled by the adaptive denominator. Bias corrections are formed in double.
#include "kernels/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace baleine::kernels {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& step) {
  const float b1 = step.beta1, b2 = step.beta2;
  const float bias1 = float(1.0 - std::pow(double(b1), double(step.step)));
  const float bias2 = float(1.0 - std::pow(double(b2), double(step.step)));
  const float step_size = step.lr / bias1;
  const float inv_sqrt_bias2 = float(1.0 / std::sqrt(double(bias2)));
  const float decay = 1.0f - step.lr * step.weight_decay;
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * step.grad_scale;
    m[i] = b1 * m[i] + (1.0f - b1) * g;
    v[i] = b2 * v[i] + (1.0f - b2) * g * g;
    const float denom = std::sqrt(v[i]) * inv_sqrt_bias2 + step.eps;
    param[i] = param[i] * decay - step_size * m[i] / denom;
  }
}

// Fixed-size chunks summed in chunk order, each chunk over 8 interleaved lanes (independent
// add chains the compiler can vectorise): the grouping is fixed, so the result does not depend
// on the thread count.
template <typename T>
double sum_of_squares(const T* x, int64_t n) {
  constexpr int64_t kChunk = 1 << 14, kLanes = 8;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 0) return 0.0;
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
    double lanes[kLanes] = {};
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += double(x[i + l]) * double(x[i + l]);
    for (; i < end; ++i) lanes[0] += double(x[i]) * double(x[i]);
    double sum = 0;
    for (double lane : lanes) sum += lane;
    partial[size_t(c)] = sum;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

template double sum_of_squares<float>(const float*, int64_t);
template double sum_of_squares<double>(const double*, int64_t);

}  // namespace baleine::kernels
