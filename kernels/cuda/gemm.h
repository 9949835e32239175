#pragma once
// Dense matrix products on NVIDIA GPUs: the CUDA twin of kernels/gemm.h, on cuBLASLt.
//
// Same contract as the CPU kernels: row-major, C [M, N] = alpha · op(A) · op(B) + beta · C, with
// op(A) [M, K] (A stored [M, K], or [K, M] when trans_a) and op(B) [K, N] (B stored [K, N], or
// [N, K] when trans_b); lda, ldb, ldc are row strides in elements and may exceed the row (a
// submatrix). beta == 0 ignores C's previous contents, NaNs included; alpha == 0 or K == 0 never
// reads A or B and gives C = beta · C (BLAS semantics). Pointers are device memory; the call is
// enqueued on `stream` and nothing synchronizes.
//
// Operand types (BF16 values are uint16_t bit patterns, as kernels/fp8.h's bf16_encode writes):
//   FP32 · FP32 → FP32: FP32 products and sums (CUBLAS_COMPUTE_32F: no TF32) unless the context's
//       math is kTf32 (CUBLAS_COMPUTE_32F_FAST_TF32: operands cut to TF32's 10-bit mantissa on
//       the tensor cores, relative error ~1e-3, several times faster from sm_80 on).
//   BF16 · BF16 → FP32 or BF16: products and sums in FP32 (a product of two BF16 values is exact
//       in FP32); a BF16 C is rounded to nearest even once, at the end.
//
// Linear layer, with kernels/gemm.h's conventions (W stored [out, in] as in torch.nn.Linear):
//   linear_forward          y [M, N]  = x [M, K] · w [N, K]ᵀ
//   linear_backward_input   dx [M, K] = dy [M, N] · w [N, K]        (dx overwritten)
//   linear_backward_weight  dw [N, K] += dy [M, N]ᵀ · x [M, K]      (dw accumulated)
//
// Errors: a bad argument (negative size, leading dimension shorter than the row, null matrix,
// wrong current device) throws std::invalid_argument naming it; a CUDA or cuBLASLt failure
// throws std::runtime_error naming the call, its status and the shape. This header needs no CUDA
// headers.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

enum class GemmMath {
  kFp32,  // FP32 operands multiplied in FP32 (the default: matches the CPU reference to ~1e-6)
  kTf32,  // FP32 operands rounded to TF32 on the tensor cores (sm_80+; elsewhere FP32)
};

// What the GEMMs need on one GPU, made once and reused: the cuBLASLt handle, a 32 MiB workspace
// (NVIDIA's advice for Hopper; split-K and stream-K kernels use it) and one cuBLASLt plan
// (descriptors + the heuristic's algorithm) per distinct problem: shape, types, transposes,
// leading dimensions, pointer alignments and math. The heuristic costs far more host time than
// the launch, so it runs once per problem; the workspace is allocated at construction and
// nothing is allocated on the device afterwards (device_allocations() lets the tests check).
// A problem cuBLASLt has no algorithm for (a BF16 submatrix with 2-byte aligned rows, say) runs
// on cublasGemmEx, same math; that cuBLAS handle is made on the first such problem.
//
// Bound to the device current at construction (checked at every call). Not thread-safe, and the
// workspace is shared by every call: use one context per stream, or order the streams.
class GemmContext {
 public:
  explicit GemmContext(GemmMath math = GemmMath::kFp32);
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;

  int device() const;
  GemmMath math() const;
  void set_math(GemmMath math);  // FP32 operands only; BF16 operands always compute in FP32

  // C = alpha · op(A) · op(B) + beta · C; see the top of this file.
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
            int64_t ldc, cudaStream_t stream);
  // BF16 operands, FP32 C.
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
            float* C, int64_t ldc, cudaStream_t stream);
  // BF16 operands, BF16 C (beta · C is formed in FP32 from C's BF16 values).
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
            const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
            uint16_t* C, int64_t ldc, cudaStream_t stream);

  // cudaMalloc calls so far (1: the workspace) and cuBLASLt plans made (heuristic queries).
  int64_t device_allocations() const;
  int64_t plans() const;
  // Plans cuBLASLt had no algorithm for, which run on cublasGemmEx instead (see gemm.cu).
  int64_t plans_on_cublas() const;
  // The workspace, for another cuBLAS handle whose calls are ordered with this context's on one
  // stream (GroupedGemmContext lends it to cublasGemmGroupedBatchedEx).
  void* workspace() const;
  size_t workspace_bytes() const;

  struct State;  // defined in kernels/cuda/gemm.cu

 private:
  std::unique_ptr<State> state_;
};

// The Linear layer's three products (device pointers, row-major; see the top of this file).
void linear_forward(GemmContext& context, const float* x, const float* w, float* y, int64_t M,
                    int64_t K, int64_t N, cudaStream_t stream);
void linear_backward_input(GemmContext& context, const float* dy, const float* w, float* dx,
                           int64_t M, int64_t K, int64_t N, cudaStream_t stream);
void linear_backward_weight(GemmContext& context, const float* dy, const float* x, float* dw,
                            int64_t M, int64_t K, int64_t N, cudaStream_t stream);

// BF16 operands; the output in FP32 or BF16.
void linear_forward(GemmContext& context, const uint16_t* x, const uint16_t* w, float* y,
                    int64_t M, int64_t K, int64_t N, cudaStream_t stream);
void linear_forward(GemmContext& context, const uint16_t* x, const uint16_t* w, uint16_t* y,
                    int64_t M, int64_t K, int64_t N, cudaStream_t stream);
void linear_backward_input(GemmContext& context, const uint16_t* dy, const uint16_t* w,
                           float* dx, int64_t M, int64_t K, int64_t N, cudaStream_t stream);
void linear_backward_input(GemmContext& context, const uint16_t* dy, const uint16_t* w,
                           uint16_t* dx, int64_t M, int64_t K, int64_t N, cudaStream_t stream);
void linear_backward_weight(GemmContext& context, const uint16_t* dy, const uint16_t* x,
                            float* dw, int64_t M, int64_t K, int64_t N, cudaStream_t stream);
void linear_backward_weight(GemmContext& context, const uint16_t* dy, const uint16_t* x,
                            uint16_t* dw, int64_t M, int64_t K, int64_t N, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
