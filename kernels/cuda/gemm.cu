// The dense GEMMs of kernels/cuda/gemm.h, on cuBLASLt.
//
// Row-major onto column-major: a row-major [R, C] matrix with row stride ld is, read
// column-major with the same ld, the [C, R] matrix: its transpose. So for C = op(A)·op(B) we ask
// cuBLASLt for Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLASLt's A is our B (transposed iff trans_b), its B is our
// A (transposed iff trans_a), and its m, n, k are our N, M, K. No data moves; the leading
// dimensions are ours unchanged.
//
// When cuBLASLt's heuristic has no algorithm for a problem (it can happen for BF16 submatrices
// whose rows are not 16-byte aligned), that problem runs on cuBLAS's cublasGemmEx instead, which
// takes any alignment: same types, same compute type, same column-major mapping.
//
// Layout: helpers, the plan cache, the one kernel (C = beta·C where no product is formed), the
// typed core, the public functions.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/lt_plan.h"
#include "kernels/cuda/nvtx.h"

namespace baleine::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // NVIDIA's advice for Hopper
constexpr int kThreads = 256;

template <typename T>
constexpr cudaDataType_t data_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, uint16_t>, "FP32 or BF16 bits");
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

std::string type_name(cudaDataType_t type) { return type == CUDA_R_32F ? "fp32" : "bf16"; }

// One matmul in cuBLASLt's column-major terms: D [m, n] = alpha·op(A) [m, k]·op(B) [k, n] +
// beta·D, A stored [m, k] (or [k, m] when trans_a), B stored [k, n] (or [n, k]), D [m, n].
struct LtProblem {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
  cudaDataType_t ab_type = CUDA_R_32F, d_type = CUDA_R_32F;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  uint32_t align_a = 256, align_b = 256, align_d = 256;

  using Key = std::array<int64_t, 14>;
  Key key() const {
    return {trans_a, trans_b, m, n, k, lda, ldb, ldd, ab_type, d_type, compute,
            align_a, align_b, align_d};
  }
  // In the caller's row-major terms (see the top of this file), for error messages.
  std::string describe() const {
    const auto s = [](int64_t v) { return std::to_string(v); };
    return "row-major C[" + s(n) + "x" + s(m) + "] = op(A)[" + s(n) + "x" + s(k) + "] * op(B)[" +
           s(k) + "x" + s(m) + "] (trans_a=" + s(trans_b) + " trans_b=" + s(trans_a) +
           " lda=" + s(ldb) + " ldb=" + s(lda) + " ldc=" + s(ldd) + ", A/B " +
           type_name(ab_type) + ", C " + type_name(d_type) + ", compute " +
           (compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? "tf32" : "fp32") + ", alignment A/B/C " +
           s(align_b) + "/" + s(align_a) + "/" + s(align_d) + " bytes)";
  }
};

// The cuBLASLt plan of one LtProblem, or cublasGemmEx's word for it.
struct GemmPlan : LtPlan {
  bool on_cublas = false;  // cuBLASLt has no algorithm: cublasGemmEx runs it
};

void check_lt(cublasStatus_t status, const char* call, const LtProblem& problem) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuda gemm: ") + call + " failed: " +
                           cublasLtGetStatusName(status) + " (" +
                           cublasLtGetStatusString(status) + ") for " + problem.describe());
}

}  // namespace

struct GemmContext::State {
  int device = 0;
  GemmMath math = GemmMath::kFp32;
  cublasLtHandle_t handle = nullptr;
  cublasHandle_t cublas = nullptr;  // made on the first problem cuBLASLt has no algorithm for
  void* workspace = nullptr;
  int64_t device_allocations = 0;
  int64_t plans_on_cublas = 0;
  std::map<LtProblem::Key, std::unique_ptr<GemmPlan>> plans;

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    plans.clear();  // the descriptors go before the handle
    if (handle != nullptr) cublasLtDestroy(handle);
    if (cublas != nullptr) cublasDestroy(cublas);
    // cudaFree waits for the device, so work still using the workspace finishes first.
    if (workspace != nullptr) BALEINE_CUDA_CALL_WARN(cudaFree(workspace));
  }
};

namespace {

using State = GemmContext::State;

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, T value,
              const LtProblem& problem) {
  check_lt(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)),
           "cublasLtMatmulDescSetAttribute", problem);
}

template <typename T>
void set_preference(cublasLtMatmulPreference_t preference,
                    cublasLtMatmulPreferenceAttributes_t attribute, T value,
                    const LtProblem& problem) {
  check_lt(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)),
           "cublasLtMatmulPreferenceSetAttribute", problem);
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                   const LtProblem& problem) {
  cublasLtMatrixLayout_t layout = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows),
                                      static_cast<uint64_t>(cols), ld),
           "cublasLtMatrixLayoutCreate", problem);
  return layout;
}

// The plan for `problem`, made on its first call. Host work only: no device memory (but for
// cuBLAS's handle, the first time cuBLASLt has no algorithm).
GemmPlan& plan_for(State& s, const LtProblem& problem) {
  const LtProblem::Key key = problem.key();
  const auto found = s.plans.find(key);
  if (found != s.plans.end()) return *found->second;

  auto plan = std::make_unique<GemmPlan>();
  check_lt(cublasLtMatmulDescCreate(&plan->desc, problem.compute, CUDA_R_32F),
           "cublasLtMatmulDescCreate", problem);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, problem.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
           problem);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, problem.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
           problem);
  // Layouts describe the stored matrices, before op().
  const int64_t m = problem.m, n = problem.n, k = problem.k;
  plan->a = problem.trans_a ? make_layout(problem.ab_type, k, m, problem.lda, problem)
                            : make_layout(problem.ab_type, m, k, problem.lda, problem);
  plan->b = problem.trans_b ? make_layout(problem.ab_type, n, k, problem.ldb, problem)
                            : make_layout(problem.ab_type, k, n, problem.ldb, problem);
  plan->d = make_layout(problem.d_type, m, n, problem.ldd, problem);

  cublasLtMatmulPreference_t preference = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate",
           problem);
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)>
      preference_guard(preference, &cublasLtMatmulPreferenceDestroy);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{kWorkspaceBytes},
                 problem);
  // Split-K partial sums must stay FP32: the OUTPUT_TYPE scheme, and INPLACE into a BF16 D,
  // would round them to BF16 before they are added up.
  uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  if (problem.d_type == CUDA_R_32F) reductions |= CUBLASLT_REDUCTION_SCHEME_INPLACE;
  set_preference(preference, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, reductions, problem);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, problem.align_a,
                 problem);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, problem.align_b,
                 problem);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, problem.align_d,
                 problem);
  set_preference(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, problem.align_d,
                 problem);

  constexpr int kWanted = 8;
  cublasLtMatmulHeuristicResult_t results[kWanted] = {};
  int returned = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(s.handle, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                     preference, kWanted, results, &returned);
  // NOT_SUPPORTED is how the heuristic says "nothing fits".
  if (status != CUBLAS_STATUS_NOT_SUPPORTED) {
    check_lt(status, "cublasLtMatmulAlgoGetHeuristic", problem);
  }
  for (int i = 0; status == CUBLAS_STATUS_SUCCESS && i < returned; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= kWorkspaceBytes) {
      plan->algo = results[i].algo;
      return *(s.plans[key] = std::move(plan));
    }
  }
  if (s.cublas == nullptr) {
    check_lt(cublasCreate(&s.cublas), "cublasCreate", problem);
    check_lt(cublasSetPointerMode(s.cublas, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode",
             problem);
    // The compute type decides TF32; the handle's math mode must not allow it on its own.
    check_lt(cublasSetMathMode(s.cublas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", problem);
  }
  plan->on_cublas = true;
  s.plans_on_cublas += 1;
  return *(s.plans[key] = std::move(plan));
}

// D = alpha·op(A)·op(B) + beta·D on cublasGemmEx, for a problem cuBLASLt has no algorithm for.
void run_on_cublas(State& s, const LtProblem& p, float alpha, const void* a, const void* b,
                   float beta, void* d, cudaStream_t stream) {
  check_lt(cublasSetStream(s.cublas, stream), "cublasSetStream", p);
  // cublasSetStream puts the handle back on cuBLAS's own workspace pool: lend ours after it.
  check_lt(cublasSetWorkspace(s.cublas, s.workspace, kWorkspaceBytes), "cublasSetWorkspace", p);
  check_lt(cublasGemmEx_64(s.cublas, p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                           p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, p.m, p.n, p.k, &alpha, a,
                           p.ab_type, p.lda, b, p.ab_type, p.ldb, &beta, d, p.d_type, p.ldd,
                           p.compute, CUBLAS_GEMM_DEFAULT),
           "cublasGemmEx", p);
}

// ---- the kernel ------------------------------------------------------------------------------

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// C [rows, cols] (row stride ld) = beta · C, in FP32 (a BF16 C is rounded once).
template <typename T>
__global__ void scale_matrix(T* c, int64_t rows, int64_t cols, int64_t ld, float beta) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / cols, col = i - row * cols;
    T* p = c + row * ld + col;
    store(p, beta * to_float(*p));
  }
}

// C = beta · C without reading A or B: the K == 0 and alpha == 0 cases, which cuBLASLt is not
// asked to handle (it may refuse k = 0).
template <typename Out>
void scale_c(Out* c, int64_t M, int64_t N, int64_t ldc, float beta, cudaStream_t stream) {
  if (beta == 1.0f) return;
  if (beta == 0.0f) {
    // All-zero bits are +0 in FP32 and BF16 alike; whatever C held (NaN too) is gone.
    BALEINE_CUDA_CALL(cudaMemset2DAsync(c, sizeof(Out) * static_cast<size_t>(ldc), 0,
                                        sizeof(Out) * static_cast<size_t>(N),
                                        static_cast<size_t>(M), stream));
    return;
  }
  using Device = std::conditional_t<std::is_same_v<Out, float>, float, __nv_bfloat16>;
  scale_matrix<<<blocks_for(M * N, kThreads), kThreads, 0, stream>>>(
      reinterpret_cast<Device*>(c), M, N, ldc, beta);
  BALEINE_CUDA_LAUNCH_CHECK();
}

// ---- the typed core ---------------------------------------------------------------------------

template <typename In, typename Out>
void run_gemm(State& s, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const In* A, int64_t lda, const In* B, int64_t ldb, float beta, Out* C,
              int64_t ldc, cudaStream_t stream) {
  NvtxRange range("gemm");
  const auto fail = [&](const std::string& what) {
    const auto str = [](int64_t v) { return std::to_string(v); };
    throw std::invalid_argument("cuda gemm (M=" + str(M) + " N=" + str(N) + " K=" + str(K) +
                                " trans_a=" + str(trans_a) + " trans_b=" + str(trans_b) +
                                " lda=" + str(lda) + " ldb=" + str(ldb) + " ldc=" + str(ldc) +
                                "): " + what);
  };
  int current = -1;
  BALEINE_CUDA_CALL(cudaGetDevice(&current));
  if (current != s.device) {
    fail("the GemmContext belongs to CUDA device " + std::to_string(s.device) + " but device " +
         std::to_string(current) + " is current");
  }
  if (M < 0 || N < 0 || K < 0) fail("negative size");
  // A row of the stored matrix must fit in its stride (as kernels/gemm.h's layouts imply).
  if (lda < (trans_a ? M : K)) fail("lda is shorter than a row of A");
  if (ldb < (trans_b ? K : N)) fail("ldb is shorter than a row of B");
  if (ldc < N) fail("ldc is shorter than a row of C");
  if (M == 0 || N == 0) return;
  if (C == nullptr) fail("C is null");
  if (K == 0 || alpha == 0.0f) {
    scale_c(C, M, N, ldc, beta, stream);
    return;
  }
  if (A == nullptr || B == nullptr) fail("A or B is null");

  LtProblem p;  // Cᵀ = op(B)ᵀ · op(A)ᵀ (see the top of this file)
  p.trans_a = trans_b;
  p.trans_b = trans_a;
  p.m = N;
  p.n = M;
  p.k = K;
  p.lda = ldb;
  p.ldb = lda;
  p.ldd = ldc;
  p.ab_type = data_type<In>();
  p.d_type = data_type<Out>();
  p.compute = std::is_same_v<In, float> && s.math == GemmMath::kTf32
                  ? CUBLAS_COMPUTE_32F_FAST_TF32
                  : CUBLAS_COMPUTE_32F;
  p.align_a = alignment_of(B);
  p.align_b = alignment_of(A);
  p.align_d = alignment_of(C);

  GemmPlan& plan = plan_for(s, p);
  if (plan.on_cublas) {
    run_on_cublas(s, p, alpha, B, A, beta, C, stream);
    return;
  }
  check_lt(cublasLtMatmul(s.handle, plan.desc, &alpha, B, plan.a, A, plan.b, &beta, C, plan.d, C,
                          plan.d, &plan.algo, s.workspace, kWorkspaceBytes, stream),
           "cublasLtMatmul", p);
}

// The Linear layer's products as kernels/cpu/gemm.cpp forms them.
template <typename In, typename Out>
void forward(GemmContext& context, const In* x, const In* w, Out* y, int64_t M, int64_t K,
             int64_t N, cudaStream_t stream) {
  NvtxRange range("linear_forward");
  context.gemm(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N, stream);
}

template <typename In, typename Out>
void backward_input(GemmContext& context, const In* dy, const In* w, Out* dx, int64_t M,
                    int64_t K, int64_t N, cudaStream_t stream) {
  NvtxRange range("linear_backward_input");
  context.gemm(false, false, M, K, N, 1.0f, dy, N, w, K, 0.0f, dx, K, stream);
}

template <typename In, typename Out>
void backward_weight(GemmContext& context, const In* dy, const In* x, Out* dw, int64_t M,
                     int64_t K, int64_t N, cudaStream_t stream) {
  NvtxRange range("linear_backward_weight");
  context.gemm(true, false, N, K, M, 1.0f, dy, N, x, K, 1.0f, dw, K, stream);
}

}  // namespace

// ---- public ------------------------------------------------------------------------------------

GemmContext::GemmContext(GemmMath math) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.math = math;
  BALEINE_CUDA_CALL(cudaGetDevice(&s.device));
  BALEINE_CUBLAS_CALL(cublasLtCreate(&s.handle));
  BALEINE_CUDA_CALL(cudaMalloc(&s.workspace, kWorkspaceBytes));
  s.device_allocations += 1;
}

GemmContext::~GemmContext() = default;

int GemmContext::device() const { return state_->device; }
GemmMath GemmContext::math() const { return state_->math; }
void GemmContext::set_math(GemmMath math) { state_->math = math; }
int64_t GemmContext::device_allocations() const { return state_->device_allocations; }
int64_t GemmContext::plans() const { return static_cast<int64_t>(state_->plans.size()); }
int64_t GemmContext::plans_on_cublas() const { return state_->plans_on_cublas; }
void* GemmContext::workspace() const { return state_->workspace; }
size_t GemmContext::workspace_bytes() const { return kWorkspaceBytes; }

void GemmContext::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc, cudaStream_t stream) {
  run_gemm(*state_, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void GemmContext::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                       float beta, float* C, int64_t ldc, cudaStream_t stream) {
  run_gemm(*state_, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void GemmContext::gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                       float beta, uint16_t* C, int64_t ldc, cudaStream_t stream) {
  run_gemm(*state_, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

void linear_forward(GemmContext& context, const float* x, const float* w, float* y, int64_t M,
                    int64_t K, int64_t N, cudaStream_t stream) {
  forward(context, x, w, y, M, K, N, stream);
}
void linear_forward(GemmContext& context, const uint16_t* x, const uint16_t* w, float* y,
                    int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  forward(context, x, w, y, M, K, N, stream);
}
void linear_forward(GemmContext& context, const uint16_t* x, const uint16_t* w, uint16_t* y,
                    int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  forward(context, x, w, y, M, K, N, stream);
}

void linear_backward_input(GemmContext& context, const float* dy, const float* w, float* dx,
                           int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  backward_input(context, dy, w, dx, M, K, N, stream);
}
void linear_backward_input(GemmContext& context, const uint16_t* dy, const uint16_t* w,
                           float* dx, int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  backward_input(context, dy, w, dx, M, K, N, stream);
}
void linear_backward_input(GemmContext& context, const uint16_t* dy, const uint16_t* w,
                           uint16_t* dx, int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  backward_input(context, dy, w, dx, M, K, N, stream);
}

void linear_backward_weight(GemmContext& context, const float* dy, const float* x, float* dw,
                            int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  backward_weight(context, dy, x, dw, M, K, N, stream);
}
void linear_backward_weight(GemmContext& context, const uint16_t* dy, const uint16_t* x,
                            float* dw, int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  backward_weight(context, dy, x, dw, M, K, N, stream);
}
void linear_backward_weight(GemmContext& context, const uint16_t* dy, const uint16_t* x,
                            uint16_t* dw, int64_t M, int64_t K, int64_t N, cudaStream_t stream) {
  backward_weight(context, dy, x, dw, M, K, N, stream);
}

}  // namespace baleine::kernels::cuda
