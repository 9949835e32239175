#pragma once
// The CUDA backend's optimizer operations (model/parameter_ops.h): kernels/cuda/adamw.h and
// the scale of kernels/cuda/elementwise.h on the backend's compute stream. sum_of_squares
// waits for its double (the guard and the clip need it on the host before the update).
#include "kernels/cuda/device_memory.h"
#include "trainer/model/cuda/cuda_memory.h"
#include "trainer/model/parameter_ops.h"

namespace baleine::model::cuda {

class CudaParameterOps final : public ParameterOps {
 public:
  explicit CudaParameterOps(CudaMemory& memory) : memory_(memory) {}

  void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                    const kernels::AdamWStep& step) override;
  void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                                 int64_t n, const kernels::AdamWStep& step) override;
  double sum_of_squares(const float* x, int64_t n) override;
  void scale(float* x, float s, int64_t n) override;

 private:
  CudaMemory& memory_;
  kernels::cuda::DeviceBuffer<double> workspace_;  // grows to the largest buffer summed
  kernels::cuda::DeviceBuffer<double> total_;
};

}  // namespace baleine::model::cuda
