#include "trainer/model/cuda/cuda_parameter_ops.h"

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/elementwise.h"

namespace baleine::model::cuda {

namespace kc = baleine::kernels::cuda;

void CudaParameterOps::adamw_update(float* param, const float* grad, float* m, float* v,
                                    int64_t n, const kernels::AdamWStep& step) {
  kc::adamw_update(param, grad, m, v, n, step, memory_.stream());
}

void CudaParameterOps::adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m,
                                                 uint16_t* v, int64_t n,
                                                 const kernels::AdamWStep& step) {
  kc::adamw_update_bf16_moments(param, grad, m, v, n, step, memory_.stream());
}

double CudaParameterOps::sum_of_squares(const float* x, int64_t n) {
  const int64_t need = kc::sum_of_squares_workspace_doubles(n);
  if (workspace_.size() < need) {
    workspace_ = kc::DeviceBuffer<double>(memory_.arena(), need, memory_.stream());
  }
  if (total_.size() == 0) total_ = kc::DeviceBuffer<double>(memory_.arena(), 1, memory_.stream());
  kc::sum_of_squares(x, n, total_.data(), workspace_.data(), memory_.stream());
  double total = 0;
  memory_.to_host(&total, total_.data(), sizeof total);
  return total;
}

void CudaParameterOps::scale(float* x, float s, int64_t n) {
  kc::scale(x, s, n, memory_.stream());
}

}  // namespace baleine::model::cuda
