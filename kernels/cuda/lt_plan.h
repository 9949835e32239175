#pragma once
// The descriptors and the heuristic's algorithm of one cuBLASLt matmul, made once per shape and
// cached by its caller (the heuristic query costs far more host time than the matmul launch);
// destroys what it holds. Shared by the dense GEMMs (gemm.cu) and the FP8 paths (fp8_gemm.cu).
#include <cublasLt.h>

namespace baleine::kernels::cuda {

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

}  // namespace baleine::kernels::cuda
