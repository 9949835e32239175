#include "trainer/model/parameter_ops.h"

#include "kernels/elementwise.h"

namespace baleine::model {

void CpuParameterOps::adamw_update(float* param, const float* grad, float* m, float* v,
                                   int64_t n, const kernels::AdamWStep& step) {
  kernels::adamw_update(param, grad, m, v, n, step);
}

void CpuParameterOps::adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m,
                                                uint16_t* v, int64_t n,
                                                const kernels::AdamWStep& step) {
  kernels::adamw_update_bf16_moments(param, grad, m, v, n, step);
}

double CpuParameterOps::sum_of_squares(const float* x, int64_t n) {
  return kernels::sum_of_squares(x, n);
}

void CpuParameterOps::scale(float* x, float s, int64_t n) { kernels::scale(x, s, n); }

}  // namespace baleine::model
