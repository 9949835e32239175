#pragma once
// What the optimizer does to the flat parameter, gradient and moment buffers of a
// ParameterStore (model/parameters.h), on the backend those buffers live on: the AdamW update,
// the sum of squares behind the global gradient norm, and scaling (the 1/dp of data-parallel
// averaging). Kept apart from model/ops.h, which is what a layer runs, and which has a double
// instantiation for the gradient checks that the optimizer does not need.
#include <cstdint>

#include "kernels/adamw.h"

namespace baleine::model {

class ParameterOps {
 public:
  virtual ~ParameterOps() = default;
  // As kernels::adamw_update / adamw_update_bf16_moments, on the backend's memory.
  virtual void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                            const kernels::AdamWStep& step) = 0;
  virtual void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m,
                                         uint16_t* v, int64_t n,
                                         const kernels::AdamWStep& step) = 0;
  // Σ x² in double, bit-identical to kernels::sum_of_squares<float> (the host waits for it).
  virtual double sum_of_squares(const float* x, int64_t n) = 0;
  // x[i] *= s.
  virtual void scale(float* x, float s, int64_t n) = 0;
};

// The CPU's: the kernels of kernels/adamw.h and kernels/elementwise.h.
class CpuParameterOps final : public ParameterOps {
 public:
  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                    const kernels::AdamWStep& step) override;
  void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                                 int64_t n, const kernels::AdamWStep& step) override;
  double sum_of_squares(const float* x, int64_t n) override;
  void scale(float* x, float s, int64_t n) override;
};

}  // namespace baleine::model
