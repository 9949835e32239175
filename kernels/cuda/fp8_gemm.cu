// The CUDA FP8 GEMM paths declared in kernels/fp8_gemm_cuda.h: C [M, N] = A [M, K] · B [N, K]ᵀ
// with DeepSeek-V3 fine-grained scales, on cuBLASLt.
//
// cuBLASLt is column-major. Our row-major C [M, N] is a column-major [N, M] matrix, so we ask
// cuBLASLt for Cᵀ = B·Aᵀ: its A operand is our B (stored [N, K] row-major = column-major K×N,
// ld K, transa = T) and its B operand is our A (column-major K×M, ld K, transb = N): the "TN"
// form that cuBLASLt's FP8 kernels require.
//
// Scale layouts cuBLASLt expects (cuBLAS docs, "block scaling factors layout"; the same
// shapes and strides are what PyTorch's _scaled_mm checks for its 1×128 / 128×128 recipes):
//   VEC128_32F on an operand with X rows of K: a [ceil(K/128), X] array with X contiguous,
//       scale(x, kb) at kb·X + x. Ours is [X, ceil(K/128)] with kb contiguous: transposed by
//       scales_outer_major below.
//   BLK128x128_32F: [ceil(X/128), ceil(K/128)] with kb contiguous and rows padded to a multiple
//       of 4 floats (16 bytes): scale(xb, kb) at xb·round_up(ceil(K/128), 4) + kb. Ours is the
//       same without padding: used as is when ceil(K/128) % 4 == 0, else copied with padding.
//
// Layout: error checks, device buffers, the cuBLASLt plan cache, the kernels (scale layouts,
// dequantization, the tile loop's epilogue), then the three paths and the public functions.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/alignment.h"
#include "kernels/cuda/lt_plan.h"
#include "kernels/cuda/nvtx.h"
#include "kernels/fp8_gemm_cuda.h"

namespace baleine::kernels {
namespace {

using cuda::alignment_of;
using cuda::LtPlan;

// ---- errors --------------------------------------------------------------------------------

// "cudaMalloc(&p, n)" → "cudaMalloc": the message names the call, not its arguments.
std::string call_name(const char* call) {
  const std::string text(call);
  return text.substr(0, text.find('('));
}

void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(call_name(call) + " failed: " + cudaGetErrorName(status) + " (" +
                           cudaGetErrorString(status) + ") at " + file + ":" +
                           std::to_string(line));
}

void check_cublaslt(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(call_name(call) + " failed: " + cublasLtGetStatusName(status) + " (" +
                           cublasLtGetStatusString(status) + ") at " + file + ":" +
                           std::to_string(line));
}

#define FP8_CUDA_CHECK(call) check_cuda((call), #call, __FILE__, __LINE__)
#define FP8_CUBLASLT_CHECK(call) check_cublaslt((call), #call, __FILE__, __LINE__)

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// cuBLASLt's heuristic has no algorithm for a matmul (as opposed to a failing call).
struct NoAlgorithm : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;  // NVIDIA's advice for Hopper
constexpr int64_t kPartialBudgetBytes = int64_t(256) << 20;  // tile loop default, per pass
constexpr int kThreads = 256;

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

cudaDataType_t cuda_type(Fp8Format format) {
  return format == Fp8Format::kE4M3 ? CUDA_R_8F_E4M3 : CUDA_R_8F_E5M2;
}
__nv_fp8_interpretation_t fp8_interpretation(Fp8Format format) {
  return format == Fp8Format::kE4M3 ? __NV_E4M3 : __NV_E5M2;
}

// ---- device buffers ------------------------------------------------------------------------

struct AllocationCount {
  int64_t allocations = 0, bytes = 0;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  // At least `bytes` of device memory; contents are not kept when it grows. Growing waits for
  // the device first, since work already enqueued may still use the old buffer; after a first
  // call at the largest shape it never grows again.
  template <typename T>
  T* reserve(size_t bytes, AllocationCount* count) {
    if (bytes > bytes_) {
      FP8_CUDA_CHECK(cudaDeviceSynchronize());
      if (ptr_ != nullptr) FP8_CUDA_CHECK(cudaFree(ptr_));
      ptr_ = nullptr;
      count->bytes -= static_cast<int64_t>(bytes_);
      bytes_ = 0;
      FP8_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
      bytes_ = bytes;
      count->bytes += static_cast<int64_t>(bytes);
      count->allocations += 1;
    }
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// ---- cuBLASLt plans --------------------------------------------------------------------------

// One cuBLASLt matmul in its own column-major terms: D [m, n] = op(A) [m, k] · B [k, n] (+ D),
// A stored k×m (transposed), B stored k×n, optionally batched with strides between matrices.
struct LtMatmul {
  int64_t m = 0, n = 0, k = 0;
  cudaDataType_t a_type = CUDA_R_8F_E4M3, b_type = CUDA_R_8F_E4M3, d_type = CUDA_R_32F;
  int64_t lda = 0, ldb = 0, ldd = 0;
  int32_t a_scale_mode = -1, b_scale_mode = -1;  // -1: no per-operand scale tensor
  int32_t batch = 1;
  int64_t batch_stride_a = 0, batch_stride_b = 0, batch_stride_d = 0;
  uint32_t align_a = 256, align_b = 256, align_d = 256;

  std::array<int64_t, 18> key() const {
    return {m, n, k, a_type, b_type, d_type, lda, ldb, ldd, a_scale_mode, b_scale_mode, batch,
            batch_stride_a, batch_stride_b, batch_stride_d, align_a, align_b, align_d};
  }
  std::string describe() const {
    const auto type = [](cudaDataType_t t) -> std::string {
      switch (t) {
        case CUDA_R_8F_E4M3: return "e4m3";
        case CUDA_R_8F_E5M2: return "e5m2";
        case CUDA_R_16BF: return "bf16";
        case CUDA_R_32F: return "f32";
        default: return std::to_string(int(t));
      }
    };
    const auto mode = [](int32_t m) -> std::string {
      switch (m) {
        case -1: return "none";
        case CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F: return "VEC128_32F";
        case CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F: return "BLK128x128_32F";
        default: return std::to_string(m);
      }
    };
    return "D[" + std::to_string(m) + "x" + std::to_string(n) + "] = A[" + std::to_string(m) +
           "x" + std::to_string(k) + ", " + type(a_type) + ", scales " + mode(a_scale_mode) +
           "] * B[" + std::to_string(k) + "x" + std::to_string(n) + ", " + type(b_type) +
           ", scales " + mode(b_scale_mode) + "] in " + type(d_type) + ", batch " +
           std::to_string(batch);
  }
};

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, T value) {
  FP8_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                   int32_t batch, int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  FP8_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  if (batch > 1) {
    FP8_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
    FP8_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof(batch_stride)));
  }
  return layout;
}

}  // namespace

struct CudaFp8GemmWorkspace::State {
  int device = 0, sm_major = 0, sm_minor = 0;
  CudaFp8GemmPath path = CudaFp8GemmPath::kAuto;  // resolved at construction: never kAuto
  int64_t partials_budget = kPartialBudgetBytes;
  bool batched_tile_products = true;  // until cuBLASLt turns a batched FP8 matmul down
  cublasLtHandle_t handle = nullptr;
  AllocationCount count;
  DeviceBuffer cublas_workspace;
  DeviceBuffer a_scales, b_scales;  // block-scaled: cuBLASLt's scale layouts
  DeviceBuffer a_bf16, b_bf16;      // dequant-bf16: the dequantized operands
  DeviceBuffer partials, accumulator;  // tile loop: per-K-tile FP32 products, FP32 sum
  std::map<std::array<int64_t, 18>, std::unique_ptr<LtPlan>> plans;

  ~State() {
    plans.clear();  // the descriptors go before the handle
    if (handle != nullptr) cublasLtDestroy(handle);
  }
};

namespace {

using State = CudaFp8GemmWorkspace::State;

LtPlan& plan_for(State& s, const LtMatmul& mm, const void* a_scales, const void* b_scales) {
  auto found = s.plans.find(mm.key());
  if (found != s.plans.end()) return *found->second;

  auto plan = std::make_unique<LtPlan>();
  FP8_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (mm.a_scale_mode >= 0) {
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mm.a_scale_mode);
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, a_scales);
  }
  if (mm.b_scale_mode >= 0) {
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mm.b_scale_mode);
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, b_scales);
  }
  plan->a = make_layout(mm.a_type, mm.k, mm.m, mm.lda, mm.batch, mm.batch_stride_a);
  plan->b = make_layout(mm.b_type, mm.k, mm.n, mm.ldb, mm.batch, mm.batch_stride_b);
  plan->d = make_layout(mm.d_type, mm.m, mm.n, mm.ldd, mm.batch, mm.batch_stride_d);

  cublasLtMatmulPreference_t preference = nullptr;
  FP8_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)>
      preference_guard(preference, &cublasLtMatmulPreferenceDestroy);
  auto set_preference = [&](cublasLtMatmulPreferenceAttributes_t attribute, auto value) {
    FP8_CUBLASLT_CHECK(
        cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
  };
  set_preference(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{kCublasWorkspaceBytes});
  // Split-K partial sums must stay FP32: the OUTPUT_TYPE scheme, and INPLACE for a BF16
  // output, would round them to BF16 before they are added up.
  uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  if (mm.d_type == CUDA_R_32F) reductions |= CUBLASLT_REDUCTION_SCHEME_INPLACE;
  set_preference(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, reductions);
  // Algorithms assume 256-byte aligned matrices unless told otherwise; views into a larger
  // buffer (a K tile, a row slice) are less aligned.
  set_preference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, mm.align_a);
  set_preference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, mm.align_b);
  set_preference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, mm.align_d);
  set_preference(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, mm.align_d);

  constexpr int kWanted = 8;
  cublasLtMatmulHeuristicResult_t results[kWanted] = {};
  int returned = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(s.handle, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                     preference, kWanted, results, &returned);
  const std::string what = mm.describe() + " on sm_" + std::to_string(s.sm_major) +
                           std::to_string(s.sm_minor) + " (cuBLASLt " +
                           std::to_string(cublasLtGetVersion()) + ")";
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) {  // how the heuristic says "nothing fits"
    throw NoAlgorithm("cublasLtMatmulAlgoGetHeuristic: CUBLAS_STATUS_NOT_SUPPORTED for " + what);
  }
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cublasLtMatmulAlgoGetHeuristic failed: ") +
                             cublasLtGetStatusName(status) + " (" +
                             cublasLtGetStatusString(status) + ") for " + what);
  }
  const cublasLtMatmulHeuristicResult_t* chosen = nullptr;
  for (int i = 0; i < returned && chosen == nullptr; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS &&
        results[i].workspaceSize <= kCublasWorkspaceBytes) {
      chosen = &results[i];
    }
  }
  if (chosen == nullptr) {
    throw NoAlgorithm("cublasLtMatmulAlgoGetHeuristic found no algorithm for " + what);
  }
  plan->algo = chosen->algo;
  return *(s.plans[mm.key()] = std::move(plan));
}

// D = op(A)·B, or D += op(A)·B when accumulate (C is D).
void run_lt(State& s, const LtMatmul& mm, const void* a, const void* b, void* d,
            const float* a_scales, const float* b_scales, bool accumulate, cudaStream_t stream) {
  LtPlan& plan = plan_for(s, mm, a_scales, b_scales);
  // The scale tensors move from call to call; the plan keeps only their modes.
  if (mm.a_scale_mode >= 0) {
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(a_scales));
  }
  if (mm.b_scale_mode >= 0) {
    set_desc(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(b_scales));
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  void* workspace = s.cublas_workspace.reserve<void>(kCublasWorkspaceBytes, &s.count);
  FP8_CUBLASLT_CHECK(cublasLtMatmul(s.handle, plan.desc, &alpha, a, plan.a, b, plan.b, &beta, d,
                                    plan.d, d, plan.d, &plan.algo, workspace,
                                    kCublasWorkspaceBytes, stream));
}

// ---- kernels ---------------------------------------------------------------------------------

int launch_blocks(int64_t items) {
  return static_cast<int>(
      std::clamp<int64_t>((items + kThreads - 1) / kThreads, 1, int64_t(1) << 20));
}

// out[kb·outer + x] = in[x·k_tiles + kb]: our [outer, k_tiles] scales as VEC128_32F wants them.
__global__ void scales_outer_major(const float* in, int64_t outer, int64_t k_tiles, float* out) {
  const int64_t total = outer * k_tiles;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t kb = i / outer, x = i - kb * outer;
    out[i] = in[x * k_tiles + kb];
  }
}

__device__ float decode_fp8(uint32_t code, __nv_fp8_interpretation_t format) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(code),
                                                     format)));
}

struct DequantArgs {
  const uint8_t* codes;
  const float* scales;
  int64_t rows, cols, tile_rows, tile_cols, scale_ld;
  __nv_fp8_interpretation_t format;
  __nv_bfloat16* out;
};

// out = bf16(decode(code) · scale), the value rounded to nearest even once. kWidth = 8 reads 8
// codes and writes 16 bytes at a time; the launcher uses it when a group of 8 never straddles
// a row or a tile.
template <int kWidth>
__global__ void dequantize_to_bf16(DequantArgs p) {
  const int64_t groups = p.rows * p.cols / kWidth;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t first = g * kWidth, row = first / p.cols, col = first - row * p.cols;
    const float scale = p.scales[(row / p.tile_rows) * p.scale_ld + col / p.tile_cols];
    if constexpr (kWidth == 8) {
      const uint2 raw = *reinterpret_cast<const uint2*>(p.codes + first);
      uint32_t packed[4];
      for (int j = 0; j < 4; ++j) {
        const uint32_t word = j < 2 ? raw.x : raw.y, shift = 16 * (j % 2);
        const uint32_t lo = __bfloat16_as_ushort(
            __float2bfloat16_rn(decode_fp8((word >> shift) & 0xFF, p.format) * scale));
        const uint32_t hi = __bfloat16_as_ushort(
            __float2bfloat16_rn(decode_fp8((word >> (shift + 8)) & 0xFF, p.format) * scale));
        packed[j] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(p.out + first) = make_uint4(packed[0], packed[1], packed[2],
                                                            packed[3]);
    } else {
      p.out[first] = __float2bfloat16_rn(decode_fp8(p.codes[first], p.format) * scale);
    }
  }
}

void dequantize(const Fp8View& q, __nv_bfloat16* out, cudaStream_t stream) {
  const DequantArgs args{q.codes, q.scales, q.rows, q.cols, q.tile.rows, q.tile.cols,
                         q.tile_cols(), fp8_interpretation(q.format), out};
  const bool by_eight = q.cols % 8 == 0 && q.tile.cols % 8 == 0 && alignment_of(q.codes) >= 8 &&
                        alignment_of(out) >= 16;
  if (by_eight) {
    dequantize_to_bf16<8><<<launch_blocks(q.rows * q.cols / 8), kThreads, 0, stream>>>(args);
  } else {
    dequantize_to_bf16<1><<<launch_blocks(q.rows * q.cols), kThreads, 0, stream>>>(args);
  }
  FP8_CUDA_CHECK(cudaGetLastError());
}

// The tile loop's epilogue: out = init + Σ_j (scale_a · scale_b) · partial_j, over `count`
// K tiles from first_tile, in FP32 (the promotion step of DeepSeek-V3 §3.3.2). init and out are
// each FP32 or BF16 (exactly one pointer of each pair set, or no init: 0); init may be out.
struct PartialsEpilogue {
  const float* partials;
  int64_t partial_stride;  // elements between two K tiles' partials
  int count;
  int64_t first_tile, k_tiles;
  const float* a_scales;  // [M, k_tiles]
  const float* b_scales;  // [ceil(N / b_tile_rows), k_tiles]
  int64_t b_tile_rows;
  const float* init_f32;
  const __nv_bfloat16* init_bf16;
  float* out_f32;
  __nv_bfloat16* out_bf16;
  int64_t rows, cols;
};

__global__ void add_scaled_partials(PartialsEpilogue p) {
  const int64_t total = p.rows * p.cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = i / p.cols, n = i - m * p.cols;
    float sum = p.init_f32 != nullptr    ? p.init_f32[i]
                : p.init_bf16 != nullptr ? __bfloat162float(p.init_bf16[i])
                                         : 0.0f;
    const float* scale_a = p.a_scales + m * p.k_tiles + p.first_tile;
    const float* scale_b = p.b_scales + (n / p.b_tile_rows) * p.k_tiles + p.first_tile;
    for (int j = 0; j < p.count; ++j) {
      sum += (scale_a[j] * scale_b[j]) * p.partials[j * p.partial_stride + i];
    }
    if (p.out_f32 != nullptr) {
      p.out_f32[i] = sum;
    } else {
      p.out_bf16[i] = __float2bfloat16_rn(sum);
    }
  }
}

// ---- the paths -------------------------------------------------------------------------------

// Output-type plumbing: FP32 C is float*, BF16 C is uint16_t* (bit patterns).
cudaDataType_t out_type(const float*) { return CUDA_R_32F; }
cudaDataType_t out_type(const uint16_t*) { return CUDA_R_16BF; }

// C = A·Bᵀ in one cuBLASLt call with scales applied per 128 of K (Hopper).
template <typename Out>
void run_block_scaled(State& s, const Fp8View& a, const Fp8View& b, Out* c, bool accumulate,
                      cudaStream_t stream) {
  const int64_t M = a.rows, N = b.rows, K = a.cols, k_tiles = K / 128;
  LtMatmul mm;
  mm.m = N;
  mm.n = M;
  mm.k = K;
  mm.a_type = cuda_type(b.format);
  mm.b_type = cuda_type(a.format);
  mm.d_type = out_type(c);
  mm.lda = mm.ldb = K;
  mm.ldd = N;
  mm.align_a = alignment_of(b.codes);
  mm.align_b = alignment_of(a.codes);
  mm.align_d = alignment_of(c);

  const float* lt_a_scales = nullptr;  // our B's
  if (b.tile.rows == 1) {
    mm.a_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    float* out = s.b_scales.reserve<float>(sizeof(float) * N * k_tiles, &s.count);
    scales_outer_major<<<launch_blocks(N * k_tiles), kThreads, 0, stream>>>(b.scales, N, k_tiles,
                                                                            out);
    FP8_CUDA_CHECK(cudaGetLastError());
    lt_a_scales = out;
  } else {
    mm.a_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const int64_t ld = round_up(k_tiles, 4), row_blocks = b.tile_rows();
    if (ld == k_tiles && alignment_of(b.scales) >= 16) {
      lt_a_scales = b.scales;
    } else {
      float* out = s.b_scales.reserve<float>(sizeof(float) * row_blocks * ld, &s.count);
      FP8_CUDA_CHECK(cudaMemcpy2DAsync(out, sizeof(float) * ld, b.scales, sizeof(float) * k_tiles,
                                       sizeof(float) * k_tiles, row_blocks,
                                       cudaMemcpyDeviceToDevice, stream));
      lt_a_scales = out;
    }
  }
  mm.b_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;  // our A's
  float* lt_b_scales = s.a_scales.reserve<float>(sizeof(float) * M * k_tiles, &s.count);
  scales_outer_major<<<launch_blocks(M * k_tiles), kThreads, 0, stream>>>(a.scales, M, k_tiles,
                                                                          lt_b_scales);
  FP8_CUDA_CHECK(cudaGetLastError());
  run_lt(s, mm, b.codes, a.codes, c, lt_a_scales, lt_b_scales, accumulate, stream);
}

// partials[j] (row-major M×N, FP32) = unscaled A_t · B_tᵀ for the K tiles t = first_tile + j,
// j < count, all `width` wide: one strided-batched FP8 matmul, or `count` single ones if
// cuBLASLt has no batched algorithm for it (the same products either way).
void tile_products(State& s, const Fp8View& a, const Fp8View& b, int64_t first_tile,
                   int64_t count, int64_t width, float* partials, cudaStream_t stream) {
  const int64_t M = a.rows, N = b.rows, K = a.cols, T = a.tile.cols;
  const auto matmul = [&](int64_t tile, int64_t batch, float* out) {
    LtMatmul mm;
    mm.m = N;
    mm.n = M;
    mm.k = width;
    mm.a_type = cuda_type(b.format);
    mm.b_type = cuda_type(a.format);
    mm.d_type = CUDA_R_32F;
    mm.lda = mm.ldb = K;
    mm.ldd = N;
    mm.batch = static_cast<int32_t>(batch);
    if (batch > 1) {
      mm.batch_stride_a = mm.batch_stride_b = T;
      mm.batch_stride_d = M * N;
    }
    const uint8_t* b_codes = b.codes + tile * T;
    const uint8_t* a_codes = a.codes + tile * T;
    mm.align_a = alignment_of(b_codes, mm.batch_stride_a);
    mm.align_b = alignment_of(a_codes, mm.batch_stride_b);
    mm.align_d = alignment_of(out, int64_t(sizeof(float)) * mm.batch_stride_d);
    run_lt(s, mm, b_codes, a_codes, out, nullptr, nullptr, false, stream);
  };
  if (count > 1 && s.batched_tile_products) {
    try {
      matmul(first_tile, count, partials);
      return;
    } catch (const NoAlgorithm&) {
      s.batched_tile_products = false;
    }
  }
  for (int64_t j = 0; j < count; ++j) matmul(first_tile + j, 1, partials + j * M * N);
}

// C = A·Bᵀ as one unscaled FP8 matmul per K tile (batched) plus a scaling epilogue (Ada).
template <typename Out>
void run_tile_loop(State& s, const Fp8View& a, const Fp8View& b, Out* c, bool accumulate,
                   cudaStream_t stream) {
  const int64_t M = a.rows, N = b.rows, K = a.cols, T = a.tile.cols;
  const int64_t full_tiles = K / T, last_width = K % T, k_tiles = a.tile_cols();
  const int64_t tile_elements = M * N;
  const int64_t per_pass = std::clamp<int64_t>(
      s.partials_budget / (int64_t(sizeof(float)) * tile_elements), 1,
      std::max<int64_t>(full_tiles, 1));
  float* partials =
      s.partials.reserve<float>(sizeof(float) * per_pass * tile_elements, &s.count);

  struct Pass {
    int64_t first_tile, count, width;
  };
  std::vector<Pass> passes;
  for (int64_t t = 0; t < full_tiles; t += per_pass) {
    passes.push_back({t, std::min(per_pass, full_tiles - t), T});
  }
  if (last_width > 0) passes.push_back({full_tiles, 1, last_width});

  constexpr bool kFloatOut = std::is_same_v<Out, float>;
  // Between passes the running sum lives in FP32: C itself, or a scratch buffer for BF16 C.
  float* sum = nullptr;
  if constexpr (kFloatOut) {
    sum = c;
  } else if (passes.size() > 1) {
    sum = s.accumulator.reserve<float>(sizeof(float) * tile_elements, &s.count);
  }

  for (size_t i = 0; i < passes.size(); ++i) {
    const Pass& pass = passes[i];
    tile_products(s, a, b, pass.first_tile, pass.count, pass.width, partials, stream);

    PartialsEpilogue epilogue{partials, tile_elements, static_cast<int>(pass.count),
                              pass.first_tile, k_tiles, a.scales, b.scales, b.tile.rows,
                              nullptr, nullptr, nullptr, nullptr, M, N};
    const bool first = i == 0, last = i + 1 == passes.size();
    if (!first) {
      epilogue.init_f32 = sum;
    } else if (accumulate) {
      if constexpr (kFloatOut) {
        epilogue.init_f32 = c;
      } else {
        epilogue.init_bf16 = reinterpret_cast<const __nv_bfloat16*>(c);
      }
    }
    if constexpr (kFloatOut) {
      epilogue.out_f32 = c;
    } else if (last) {
      epilogue.out_bf16 = reinterpret_cast<__nv_bfloat16*>(c);
    } else {
      epilogue.out_f32 = sum;
    }
    add_scaled_partials<<<launch_blocks(tile_elements), kThreads, 0, stream>>>(epilogue);
    FP8_CUDA_CHECK(cudaGetLastError());
  }
}

// C [m, n] = A [m, k]·B [n, k]ᵀ in BF16 with FP32 compute.
template <typename Out>
void run_bf16(State& s, const void* a, const void* b, int64_t m, int64_t n, int64_t k, Out* c,
              bool accumulate, cudaStream_t stream) {
  LtMatmul mm;
  mm.m = n;
  mm.n = m;
  mm.k = k;
  mm.a_type = mm.b_type = CUDA_R_16BF;
  mm.d_type = out_type(c);
  mm.lda = mm.ldb = k;
  mm.ldd = n;
  mm.align_a = alignment_of(b);
  mm.align_b = alignment_of(a);
  mm.align_d = alignment_of(c);
  run_lt(s, mm, b, a, c, nullptr, nullptr, accumulate, stream);
}

template <typename Out>
void run_dequant_bf16(State& s, const Fp8View& a, const Fp8View& b, Out* c, bool accumulate,
                      cudaStream_t stream) {
  const int64_t M = a.rows, N = b.rows, K = a.cols;
  auto* a_bf16 = s.a_bf16.reserve<__nv_bfloat16>(sizeof(__nv_bfloat16) * M * K, &s.count);
  auto* b_bf16 = s.b_bf16.reserve<__nv_bfloat16>(sizeof(__nv_bfloat16) * N * K, &s.count);
  dequantize(a, a_bf16, stream);
  dequantize(b, b_bf16, stream);
  run_bf16(s, a_bf16, b_bf16, M, N, K, c, accumulate, stream);
}

void require_current_device(const State& s) {
  int device = -1;
  FP8_CUDA_CHECK(cudaGetDevice(&device));
  require(device == s.device, "the CudaFp8GemmWorkspace belongs to CUDA device " +
                                  std::to_string(s.device) + " but device " +
                                  std::to_string(device) + " is current");
}

template <typename Out>
void fp8_gemm(const Fp8View& a, const Fp8View& b, Out* c, bool accumulate,
              CudaFp8GemmWorkspace& workspace, cudaStream_t stream) {
  cuda::NvtxRange range("fp8_gemm_tn");
  State& s = workspace.state();
  require_current_device(s);
  cuda_fp8_gemm_check(a, b, s.path);
  const int64_t M = a.rows, N = b.rows, K = a.cols;
  if (M == 0 || N == 0) return;
  require(c != nullptr, "cuda_fp8_gemm_tn: C is null");
  if (K == 0) {
    if (!accumulate) FP8_CUDA_CHECK(cudaMemsetAsync(c, 0, sizeof(Out) * M * N, stream));
    return;
  }
  switch (s.path) {
    case CudaFp8GemmPath::kBlockScaledFp8:
      require(alignment_of(c) >= 16, "cuda_fp8_gemm_tn (block-scaled-fp8): C must be 16-byte "
                                     "aligned (cuBLASLt FP8 matrices are)");
      run_block_scaled(s, a, b, c, accumulate, stream);
      break;
    case CudaFp8GemmPath::kTileLoopFp8:
      run_tile_loop(s, a, b, c, accumulate, stream);
      break;
    case CudaFp8GemmPath::kDequantBf16:
      run_dequant_bf16(s, a, b, c, accumulate, stream);
      break;
    case CudaFp8GemmPath::kAuto:
      throw std::logic_error("cuda_fp8_gemm_tn: the workspace's path was never resolved");
  }
}

template <typename Out>
void bf16_gemm(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k, Out* c,
               bool accumulate, CudaFp8GemmWorkspace& workspace, cudaStream_t stream) {
  State& s = workspace.state();
  require_current_device(s);
  require(m >= 0 && n >= 0 && k >= 0, "cuda_bf16_gemm_tn: negative size");
  if (m == 0 || n == 0) return;
  require(c != nullptr && (k == 0 || (a != nullptr && b != nullptr)),
          "cuda_bf16_gemm_tn: null matrix");
  if (k == 0) {
    if (!accumulate) FP8_CUDA_CHECK(cudaMemsetAsync(c, 0, sizeof(Out) * m * n, stream));
    return;
  }
  run_bf16(s, a, b, m, n, k, c, accumulate, stream);
}

}  // namespace

// ---- public ----------------------------------------------------------------------------------

const char* cuda_fp8_gemm_path_name(CudaFp8GemmPath path) {
  switch (path) {
    case CudaFp8GemmPath::kAuto: return "auto";
    case CudaFp8GemmPath::kBlockScaledFp8: return "block-scaled-fp8";
    case CudaFp8GemmPath::kTileLoopFp8: return "tile-loop-fp8";
    case CudaFp8GemmPath::kDequantBf16: return "dequant-bf16";
  }
  return "?";
}

bool cuda_fp8_gemm_path_runs_on(CudaFp8GemmPath path, int sm_major, int sm_minor) {
  const int sm = sm_major * 10 + sm_minor;
  switch (path) {
    case CudaFp8GemmPath::kBlockScaledFp8: return sm_major >= 9;  // wgmma + cuBLAS block scales
    case CudaFp8GemmPath::kTileLoopFp8: return sm >= 89;          // FP8 tensor cores
    case CudaFp8GemmPath::kDequantBf16: return sm >= 75;
    case CudaFp8GemmPath::kAuto: return sm >= 75;
  }
  return false;
}

CudaFp8GemmPath cuda_fp8_gemm_path(int sm_major, int sm_minor) {
  const int sm = sm_major * 10 + sm_minor;
  require(sm >= 75, "baleine's CUDA backend needs compute capability 7.5 or newer; got " +
                        std::to_string(sm_major) + "." + std::to_string(sm_minor));
  if (sm_major >= 9) return CudaFp8GemmPath::kBlockScaledFp8;
  if (sm >= 89) return CudaFp8GemmPath::kTileLoopFp8;
  return CudaFp8GemmPath::kDequantBf16;
}

void cuda_fp8_gemm_check(const Fp8View& a, const Fp8View& b, CudaFp8GemmPath path) {
  const int64_t M = a.rows, N = b.rows, K = a.cols, T = a.tile.cols;
  const std::string where = std::string("cuda_fp8_gemm_tn (") + cuda_fp8_gemm_path_name(path) +
                            ", M=" + std::to_string(M) + " N=" + std::to_string(N) +
                            " K=" + std::to_string(K) + "): ";
  require(path != CudaFp8GemmPath::kAuto, where + "the check needs a concrete path, not auto");
  require(M >= 0 && N >= 0 && K >= 0, where + "negative size");
  require(b.cols == K, where + "A and B need the same K; B has " + std::to_string(b.cols) +
                           " columns");
  require(a.tile.rows == 1 && T >= 1,
          where + "A's tiles must be 1×T (one row high); got " + std::to_string(a.tile.rows) +
              "×" + std::to_string(T));
  require(b.tile.cols == T, where + "A and B need the same K tile; got " + std::to_string(T) +
                                " and " + std::to_string(b.tile.cols));
  require(b.tile.rows == 1 || b.tile.rows == T,
          where + "B's tiles must be 1×T or T×T; got " + std::to_string(b.tile.rows) + "×" +
              std::to_string(b.tile.cols));
  const bool empty = M == 0 || N == 0 || K == 0;
  require(empty || (a.codes != nullptr && a.scales != nullptr && b.codes != nullptr &&
                    b.scales != nullptr),
          where + "null codes or scales");

  const bool fp8_tensor_cores = path != CudaFp8GemmPath::kDequantBf16;
  if (fp8_tensor_cores) {
    require(!(a.format == Fp8Format::kE5M2 && b.format == Fp8Format::kE5M2),
            where + "cuBLASLt has no E5M2 × E5M2 FP8 matmul; quantize one operand as E4M3");
    require(alignment_of(a.codes) >= 16 && alignment_of(b.codes) >= 16,
            where + "FP8 codes must be 16-byte aligned (cuBLASLt FP8 matrices are)");
  }
  if (path == CudaFp8GemmPath::kBlockScaledFp8) {
    require(T == 128, where + "cuBLASLt's block scales cover 128 elements of K: tiles must be "
                              "1×128 or 128×128, got K tile " + std::to_string(T));
    require(K % 128 == 0, where + "K % 128 == 0 is required (whole 128-wide scale blocks)");
    require(M % 16 == 0, where + "M % 16 == 0 is required (A's scale vectors, M floats per "
                                 "K block, stay 16-byte aligned)");
    require(N % 16 == 0, where + "N % 16 == 0 is required (C's rows in 16-element steps)");
  } else if (path == CudaFp8GemmPath::kTileLoopFp8) {
    require(K % 16 == 0 && T % 16 == 0,
            where + "K % 16 == 0 and K tile % 16 == 0 are required (FP8 tensor cores take K in "
                    "16-byte steps); K tile is " + std::to_string(T));
    require(N % 4 == 0, where + "N % 4 == 0 is required (rows of the FP32 partials must be "
                                "16-byte aligned)");
  }
}

CudaFp8GemmWorkspace::CudaFp8GemmWorkspace() : state_(std::make_unique<State>()) {
  State& s = *state_;
  FP8_CUDA_CHECK(cudaGetDevice(&s.device));
  FP8_CUDA_CHECK(
      cudaDeviceGetAttribute(&s.sm_major, cudaDevAttrComputeCapabilityMajor, s.device));
  FP8_CUDA_CHECK(
      cudaDeviceGetAttribute(&s.sm_minor, cudaDevAttrComputeCapabilityMinor, s.device));
  s.path = cuda_fp8_gemm_path(s.sm_major, s.sm_minor);
  FP8_CUBLASLT_CHECK(cublasLtCreate(&s.handle));
  s.cublas_workspace.reserve<void>(kCublasWorkspaceBytes, &s.count);
}

CudaFp8GemmWorkspace::~CudaFp8GemmWorkspace() = default;

int CudaFp8GemmWorkspace::device() const { return state_->device; }
int CudaFp8GemmWorkspace::sm_major() const { return state_->sm_major; }
int CudaFp8GemmWorkspace::sm_minor() const { return state_->sm_minor; }
CudaFp8GemmPath CudaFp8GemmWorkspace::path() const { return state_->path; }
void CudaFp8GemmWorkspace::set_tile_loop_partials_budget(int64_t bytes) {
  state_->partials_budget = bytes;
}
int64_t CudaFp8GemmWorkspace::device_bytes() const { return state_->count.bytes; }
int64_t CudaFp8GemmWorkspace::allocations() const { return state_->count.allocations; }

void CudaFp8GemmWorkspace::force_path(CudaFp8GemmPath path) {
  State& s = *state_;
  if (path == CudaFp8GemmPath::kAuto) {
    s.path = cuda_fp8_gemm_path(s.sm_major, s.sm_minor);
    return;
  }
  require(cuda_fp8_gemm_path_runs_on(path, s.sm_major, s.sm_minor),
          std::string("the ") + cuda_fp8_gemm_path_name(path) +
              " path cannot run on this GPU (sm_" + std::to_string(s.sm_major) +
              std::to_string(s.sm_minor) + ")");
  s.path = path;
}

void cuda_fp8_gemm_tn(const Fp8View& a, const Fp8View& b, float* c, bool accumulate,
                      CudaFp8GemmWorkspace& workspace, cudaStream_t stream) {
  fp8_gemm(a, b, c, accumulate, workspace, stream);
}

void cuda_fp8_gemm_tn(const Fp8View& a, const Fp8View& b, uint16_t* c_bf16, bool accumulate,
                      CudaFp8GemmWorkspace& workspace, cudaStream_t stream) {
  fp8_gemm(a, b, c_bf16, accumulate, workspace, stream);
}

void cuda_bf16_gemm_tn(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k,
                       float* c, bool accumulate, CudaFp8GemmWorkspace& workspace,
                       cudaStream_t stream) {
  bf16_gemm(a, b, m, n, k, c, accumulate, workspace, stream);
}

void cuda_bf16_gemm_tn(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k,
                       uint16_t* c_bf16, bool accumulate, CudaFp8GemmWorkspace& workspace,
                       cudaStream_t stream) {
  bf16_gemm(a, b, m, n, k, c_bf16, accumulate, workspace, stream);
}

}  // namespace baleine::kernels
