// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Algorithm 2), in
// the form torch.optim.AdamW computes it:
//   g = grad_scale · grad
//   m = β1·m + (1−β1)·g,   v = β2·v + (1−β2)·g²
//   param = param · (1 − lr·wd) − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
// The decay multiplies the parameter directly (decoupled) instead of being added to g, so it
// is not rescaled by the adaptive denominator. Bias corrections are formed in double.
// adamw_update_bf16_moments runs the same per-element update on moments stored as BF16.
#include "kernels/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/thread_scratch.h"
#include "kernels/fp8.h"

namespace baleine::kernels {
namespace {

// The scalars of one step, formed once per call.
struct StepCoefficients {
  float beta1, beta2;
  float step_size;       // lr / (1 − β1^t)
  float inv_sqrt_bias2;  // 1 / √(1 − β2^t)
  float decay;           // 1 − lr·wd
  float eps, grad_scale;
};

StepCoefficients coefficients_of(const AdamWStep& step) {
  const float bias1 = float(1.0 - std::pow(double(step.beta1), double(step.step)));
  const float bias2 = float(1.0 - std::pow(double(step.beta2), double(step.step)));
  return {step.beta1,
          step.beta2,
          step.lr / bias1,
          float(1.0 / std::sqrt(double(bias2))),
          1.0f - step.lr * step.weight_decay,
          step.eps,
          step.grad_scale};
}

// One element's update, in FP32. Both kernels run exactly this, so BF16 moments differ from
// FP32 ones only by the rounding of what is stored between steps.
inline void update_element(float& param, float grad, float& m, float& v,
                           const StepCoefficients& c) {
  const float g = grad * c.grad_scale;
  m = c.beta1 * m + (1.0f - c.beta1) * g;
  v = c.beta2 * v + (1.0f - c.beta2) * g * g;
  const float denom = std::sqrt(v) * c.inv_sqrt_bias2 + c.eps;
  param = param * c.decay - c.step_size * m / denom;
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& step) {
  const StepCoefficients c = coefficients_of(step);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) update_element(param[i], grad[i], m[i], v[i], c);
}

void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& step) {
  const StepCoefficients c = coefficients_of(step);
  // Blocks of FP32 moments on the stack: decode, the same vectorisable loop as adamw_update,
  // encode. The block size only bounds the staging; it does not change any result.
  constexpr int64_t kBlock = 1024;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kBlock, count = std::min(kBlock, n - first);
    float m32[kBlock], v32[kBlock];
    for (int64_t i = 0; i < count; ++i) {
      m32[i] = bf16_decode(m[first + i]);
      v32[i] = bf16_decode(v[first + i]);
    }
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) {
      update_element(param[first + i], grad[first + i], m32[i], v32[i], c);
    }
    for (int64_t i = 0; i < count; ++i) {
      m[first + i] = bf16_encode(m32[i]);
      v[first + i] = bf16_encode(v32[i]);
    }
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
  struct ChunkSums;
  double* partial = thread_scratch<ChunkSums, double>(static_cast<size_t>(chunks));
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
    partial[c] = sum;
  }
  double total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

template double sum_of_squares<float>(const float*, int64_t);
template double sum_of_squares<double>(const double*, int64_t);

}  // namespace baleine::kernels
