#pragma once
// The expert GEMMs of a Mixture-of-Experts layer, grouped: one cuBLAS launch for all local
// experts rather than a loop of small GEMMs (an expert sees a few hundred tokens, so a launch per
// expert leaves most of the GPU idle and pays a launch each).
//
// Layout (row-major, device memory):
//   activations x, dx [rows, K] and y, dy [rows, N], tokens sorted by expert: expert e owns rows
//       [offsets[e], offsets[e+1]);
//   weights w, dw [E, N, K] contiguous: expert e's Linear weight [N, K] (torch.nn.Linear's
//       [out, in]) at w + e·N·K.
//   grouped_linear_forward          y_e  = x_e · w_eᵀ       (y's rows overwritten)
//   grouped_linear_backward_input   dx_e = dy_e · w_e       (dx's rows overwritten, or added
//                                                            to with accumulate)
//   grouped_linear_backward_weight  dw_e += dy_eᵀ · x_e     (accumulated; an expert without
//                                                            rows leaves dw_e as it was)
// The same products, one expert at a time, as kernels/gemm.h's linear_* (and kernels/cuda/gemm.h).
//
// The row offsets are HOST memory, read during the call (the array may be reused at once): the
// sizes of a cuBLAS GEMM are host arguments, and the caller knows the counts on the host anyway
// (the dispatch exchanges per-expert counts before the tokens, to size its buffers).
//
// How (cuBLAS 12.5+, cublasGemmGroupedBatchedEx): each expert with rows is one group of size 1
// (its own m, n, k); sizes, leading dimensions, alpha and beta are host arrays, the A/B/C pointer
// arrays must be device memory (cuBLAS docs; NVIDIA's GemmGroupedBatchedEx sample copies them
// over). The context keeps a ring of pointer slots (pinned host + device, 3·E pointers each);
// a call fills one slot, copies it with one cudaMemcpyAsync on the stream, launches the GEMM and
// records the slot's event; a slot is refilled only once its event has completed (the copy has
// read the pinned memory and the GEMM the device copy), so the host blocks only when it runs a
// whole ring ahead of the GPU. Experts with zero rows are left out of the call (so whether cuBLAS
// takes m = 0 does not matter).
//
// Falls back to a loop of cuBLASLt GEMMs (GemmContext, one per expert with rows) when:
//   - a matrix or a row stride is not 16-byte aligned (K or N not a multiple of 4 for FP32, of 8
//     for BF16; or offset pointers): the grouped kernels ask for 16-byte aligned matrices, and
//     cuBLASLt, told the alignment, picks kernels that need less;
//   - cublasGemmGroupedBatchedEx does not take the type combination. NVIDIA's table for it lists
//     FP32·FP32→FP32 (FP32 or TF32 compute) and BF16·BF16→BF16 (FP32 compute), as far as we
//     know without a GPU to ask, but not BF16 operands with an FP32 C (cublasGemmEx has that).
//     So the first call of each combination tries the grouped call; if cuBLAS answers
//     NOT_SUPPORTED, INVALID_VALUE or ARCH_MISMATCH, that combination takes the loop from then
//     on (last_path() tells which ran);
//   - there is nothing to multiply (K = 0 in the forward, N = 0 in the backward input): the
//     outputs are zeroed, which GemmContext does without cuBLAS;
//   - a size or leading dimension exceeds INT_MAX (the 32-bit API);
//   - force_loop(true) (the tests compare both paths).
//
// cuBLASLt grouped matmul: newer cuBLASLt releases add an experimental grouped matmul
// (cublasLtGroupedMatrixLayoutCreate, sizes in device memory; NVIDIA's LtHSHgemmGroupedSimple
// sample). The cuBLAS 13.1.0 headers of the CUDA 13.0 toolkit baleine builds against have no
// grouped layout, so this uses cublasGemmGroupedBatchedEx. Worth revisiting: device-side counts
// would spare the host the counts.
//
// This header needs no CUDA headers.
#include <cstdint>
#include <memory>

#include "kernels/cuda/gemm.h"
#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// Expert e owns rows [offsets[e], offsets[e + 1]) of the activations. HOST memory, experts + 1
// non-decreasing entries.
struct ExpertRows {
  const int64_t* offsets = nullptr;
  int64_t experts = 0;

  int64_t rows(int64_t expert) const { return offsets[expert + 1] - offsets[expert]; }
};

enum class GroupedGemmPath {
  kNone,     // no call yet, or no expert had rows (nothing was launched)
  kGrouped,  // one cublasGemmGroupedBatchedEx
  kLoop,     // one cuBLASLt GEMM per expert with rows
};
const char* grouped_gemm_path_name(GroupedGemmPath path);  // "none" | "grouped" | "loop"

// The cuBLAS handle, the pointer ring and a GemmContext (the loop path, whose workspace the
// grouped calls share). Pointer slots only grow: after a first call with the most experts no
// call allocates (device_allocations() lets the tests check). Bound to the device current at
// construction; not thread-safe; one context per stream, or order the streams.
class GroupedGemmContext {
 public:
  explicit GroupedGemmContext(GemmMath math = GemmMath::kFp32);
  ~GroupedGemmContext();  // waits for the calls still reading its pointer slots
  GroupedGemmContext(const GroupedGemmContext&) = delete;
  GroupedGemmContext& operator=(const GroupedGemmContext&) = delete;

  int device() const;
  GemmMath math() const;
  void set_math(GemmMath math);  // both paths; FP32 operands only
  void force_loop(bool loop);
  GroupedGemmPath last_path() const;
  // cudaMalloc + cudaHostAlloc calls so far, this context's and its GemmContext's.
  int64_t device_allocations() const;
  GemmContext& dense();  // the loop path's context

  struct State;  // defined in kernels/cuda/grouped_gemm.cpp
  State& state() { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

// FP32. x, dx [rows, K]; y, dy [rows, N]; w, dw [E, N, K]; rows = offsets[E] (see the top).
void grouped_linear_forward(GroupedGemmContext& context, const ExpertRows& rows, const float* x,
                            const float* w, float* y, int64_t K, int64_t N, cudaStream_t stream);
void grouped_linear_backward_input(GroupedGemmContext& context, const ExpertRows& rows,
                                   const float* dy, const float* w, float* dx, int64_t K,
                                   int64_t N, cudaStream_t stream,
                                   bool accumulate = false);
void grouped_linear_backward_weight(GroupedGemmContext& context, const ExpertRows& rows,
                                    const float* dy, const float* x, float* dw, int64_t K,
                                    int64_t N, cudaStream_t stream);

// BF16 operands (bit patterns), FP32 compute; the output in FP32 or BF16.
void grouped_linear_forward(GroupedGemmContext& context, const ExpertRows& rows,
                            const uint16_t* x, const uint16_t* w, float* y, int64_t K, int64_t N,
                            cudaStream_t stream);
void grouped_linear_forward(GroupedGemmContext& context, const ExpertRows& rows,
                            const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t K,
                            int64_t N, cudaStream_t stream);
void grouped_linear_backward_input(GroupedGemmContext& context, const ExpertRows& rows,
                                   const uint16_t* dy, const uint16_t* w, float* dx, int64_t K,
                                   int64_t N, cudaStream_t stream,
                                   bool accumulate = false);
void grouped_linear_backward_input(GroupedGemmContext& context, const ExpertRows& rows,
                                   const uint16_t* dy, const uint16_t* w, uint16_t* dx,
                                   int64_t K, int64_t N, cudaStream_t stream,
                                   bool accumulate = false);
void grouped_linear_backward_weight(GroupedGemmContext& context, const ExpertRows& rows,
                                    const uint16_t* dy, const uint16_t* x, float* dw, int64_t K,
                                    int64_t N, cudaStream_t stream);
void grouped_linear_backward_weight(GroupedGemmContext& context, const ExpertRows& rows,
                                    const uint16_t* dy, const uint16_t* x, uint16_t* dw,
                                    int64_t K, int64_t N, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
