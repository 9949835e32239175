#pragma once
// FP8 GEMM with DeepSeek-V3 fine-grained scaling on NVIDIA GPUs: the CUDA twin of
// kernels/fp8_gemm.h. Same contract: TN layout, C [M, N] = A [M, K] · B [N, K]ᵀ (or C += …),
// A in 1×T tiles, B in 1×T or T×T tiles, one FP32 scale per tile; here the Fp8Views hold
// DEVICE pointers (codes and scales) and C is device memory, FP32 or BF16.
//
// One path per GPU generation, chosen by cuda_fp8_gemm_path(major, minor):
//   block-scaled-fp8 (sm_90+, Hopper): one cuBLASLt FP8 matmul with per-block scales applied
//       inside the K loop: CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F for 1×128 operands,
//       CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F for 128×128 blocks (cuBLAS 12.9+). cuBLASLt
//       wants its own scale layouts; kernels/cuda/fp8_gemm.cu converts ours (documented there).
//   tile-loop-fp8 (sm_89, Ada): on Ada cuBLASLt scales FP8 only per tensor (SCALAR_32F); the
//       per-row (OUTER_VEC_32F) and block modes came with cuBLAS 12.9 for Hopper (NVIDIA,
//       "Boosting Matrix Multiplication Speed and Flexibility with NVIDIA cuBLAS 12.9"). No
//       cuBLASLt call can apply a scale per (row, K tile) inside its K loop there, so each K
//       tile is one unscaled FP8 matmul into FP32 partials (strided-batched), and a kernel adds
//       scale_a · scale_b · partial into an FP32 sum: the recipe exactly, products on FP8
//       tensor cores. Cost: the partials round-trip through memory (~8 bytes per output per
//       K tile against 256 FLOPs), so it is memory-bound and may well lose to dequant-bf16 on
//       the same GPU; bench/fp8_gemm_gpu_bench.cpp times both wherever it runs.
//   dequant-bf16 (sm_75/80/86): FP8 stays the storage format; a kernel writes code·scale as
//       BF16 and a cuBLASLt BF16 GEMM (FP32 compute) multiplies. Each operand value is rounded
//       to BF16 (relative error ≤ 2⁻⁹).
// Every path can be forced (CudaFp8GemmWorkspace::force_path) on a GPU that runs it, which is
// how the tests compare all of them on one machine.
//
// Requirements are checked before anything runs (cuda_fp8_gemm_check); a violation throws
// std::invalid_argument naming it. CUDA and cuBLASLt failures throw std::runtime_error naming
// the call and its status. This header needs no CUDA headers.
#include <cstdint>
#include <memory>

#include "kernels/fp8_quantize.h"

// The CUDA runtime's stream type, declared as cuda_runtime_api.h declares it.
struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace baleine::kernels {

enum class CudaFp8GemmPath {
  kAuto,            // the path of the workspace's GPU generation
  kBlockScaledFp8,  // sm_90+
  kTileLoopFp8,     // sm_89+
  kDequantBf16,     // sm_75+
};

// "auto" | "block-scaled-fp8" | "tile-loop-fp8" | "dequant-bf16"
const char* cuda_fp8_gemm_path_name(CudaFp8GemmPath path);
// The path for a GPU of compute capability major.minor; throws std::invalid_argument below
// sm_75 (baleine's oldest target).
CudaFp8GemmPath cuda_fp8_gemm_path(int sm_major, int sm_minor);
// Whether a GPU of that compute capability has the hardware a (concrete) path needs.
bool cuda_fp8_gemm_path_runs_on(CudaFp8GemmPath path, int sm_major, int sm_minor);

// Throws std::invalid_argument naming the first requirement of `path` (not kAuto) that C = A·Bᵀ
// does not meet. Reads only the views' shapes, tiles, formats and pointer values.
//   all paths: K = a.cols = b.cols; A's tiles are 1×T, B's 1×T or T×T, the same T.
//   block-scaled-fp8: T = 128; K % 128 == 0; M % 16 == 0 and N % 16 == 0 (TMA-friendly rows
//       and scale vectors); codes 16-byte aligned; not both operands E5M2.
//   tile-loop-fp8: K % 16 == 0 and T % 16 == 0 (FP8 tensor cores take K in 16-byte steps);
//       N % 4 == 0 (rows of the FP32 partials 16-byte aligned); codes 16-byte aligned; not both
//       operands E5M2.
//   dequant-bf16: nothing more.
void cuda_fp8_gemm_check(const Fp8View& a, const Fp8View& b, CudaFp8GemmPath path);

// What the GEMMs need on one GPU, made once and reused: the cuBLASLt handle, its 32 MiB
// workspace, the buffers for cuBLASLt's scale layouts, dequantized operands and FP32 partials,
// and the cuBLASLt plans (descriptors + chosen algorithm) per shape. Buffers only grow, so after
// a first call at the largest shape no call allocates. Bound to the device current at
// construction. Not thread-safe: use one per stream (calls on one workspace from two streams
// would share its buffers).
class CudaFp8GemmWorkspace {
 public:
  CudaFp8GemmWorkspace();
  ~CudaFp8GemmWorkspace();
  CudaFp8GemmWorkspace(const CudaFp8GemmWorkspace&) = delete;
  CudaFp8GemmWorkspace& operator=(const CudaFp8GemmWorkspace&) = delete;

  int device() const;
  int sm_major() const;
  int sm_minor() const;
  // The path the next GEMM runs (never kAuto).
  CudaFp8GemmPath path() const;
  // Runs `path` from now on (kAuto: back to the generation's path). Throws std::invalid_argument
  // when this GPU cannot run it.
  void force_path(CudaFp8GemmPath path);
  // tile-loop-fp8 keeps at most this many bytes of FP32 partials (default 256 MiB, at least
  // one K tile's worth); K tiles beyond that run in further passes. Tests make it small to
  // run the multi-pass code on small shapes.
  void set_tile_loop_partials_budget(int64_t bytes);
  // Device memory held, and how many cudaMalloc calls it took so far (the tests check that
  // repeated calls at one shape allocate nothing).
  int64_t device_bytes() const;
  int64_t allocations() const;

  struct State;  // defined in kernels/cuda/fp8_gemm.cu
  State& state() { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

// C [M, N] (row-major, device) = A·Bᵀ, or C += A·Bᵀ when accumulate; A and B are device views
// with M = a.rows, N = b.rows, K = a.cols. Enqueued on `stream`; nothing synchronizes. M, N or
// K = 0 is allowed (K = 0 gives C = 0, or leaves C when accumulating).
void cuda_fp8_gemm_tn(const Fp8View& a, const Fp8View& b, float* c, bool accumulate,
                      CudaFp8GemmWorkspace& workspace, cudaStream_t stream);
// The same with C in BF16 (bit patterns as bf16_encode writes them): the sum is formed in FP32
// and rounded to nearest even once, at the end.
void cuda_fp8_gemm_tn(const Fp8View& a, const Fp8View& b, uint16_t* c_bf16, bool accumulate,
                      CudaFp8GemmWorkspace& workspace, cudaStream_t stream);

// The plain cuBLASLt BF16 GEMM that dequant-bf16 runs (FP32 compute), TN like the above:
// C [m, n] = A [m, k] · B [n, k]ᵀ (+ C), all row-major device arrays of BF16 bit patterns.
// The benchmark's baseline.
void cuda_bf16_gemm_tn(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k,
                       float* c, bool accumulate, CudaFp8GemmWorkspace& workspace,
                       cudaStream_t stream);
void cuda_bf16_gemm_tn(const uint16_t* a, const uint16_t* b, int64_t m, int64_t n, int64_t k,
                       uint16_t* c_bf16, bool accumulate, CudaFp8GemmWorkspace& workspace,
                       cudaStream_t stream);

}  // namespace baleine::kernels
