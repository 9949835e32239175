#pragma once
// AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay, FP32 master weights.
#include <cstdint>

namespace baleine::kernels {

struct AdamWStep {
  float lr = 0;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0;  // applied as param -= lr · weight_decay · param
  int64_t step = 1;        // 1-based, for bias correction
  float grad_scale = 1;    // gradients are multiplied by this first (clipping)
};

// One update of n elements; m and v are the first and second moments (updated in place).
// Decay uses the old value, as torch.optim.AdamW does: p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + eps).
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWStep& step);

// The same update with the moments stored as BF16 bit patterns (kernels/fp8.h), which halves
// the optimizer state (DeepSeek-V3 report §3.3.3 keeps AdamW's moments in BF16). Each element
// is updated in FP32 exactly as adamw_update does, from the decoded moments; the parameter step
// uses the new FP32 moments, and only what is stored is rounded (to nearest even). So the
// result equals adamw_update on the decoded moments followed by bf16_encode of m and v.
void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& step);

// Σ x² in double (for the global gradient norm).
template <typename T>
double sum_of_squares(const T* x, int64_t n);

}  // namespace baleine::kernels
