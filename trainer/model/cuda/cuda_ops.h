#pragma once
// The CUDA backend's operations (model/ops.h) for float: each calls its twin in kernels/cuda on
// the backend's compute stream, with scratch from the device arena. Everything is queued; the
// host waits only where an op returns a value to it (the losses) or the model copies to the
// host (model/cuda/cuda_memory.h).
//
// Linears: FP32 and BF16 through cuBLASLt (kernels/cuda/gemm.h; BF16 operands, FP32
// accumulation and output; the routed experts' grouped through cuBLAS, grouped_gemm.h), FP8 through kernels/fp8_gemm_cuda.h (block-scaled FP8 on sm_90,
// the FP8 tile loop on sm_89, dequantize-to-BF16 before), the operands quantized on the device
// in the same tiles as the CPU emulation. The results agree with the CPU backend to the
// rounding of the GPU's summation order, not bit for bit.
//
// Attention: under BF16 or FP8 Linears (AttentionCore::kBf16) through cuDNN's fused flash
// attention where cuDNN runs the shape (sm_80+; kernels/cuda/cudnn_attention.h), the FP32
// tensors converted to BF16 and back around it; otherwise, and under FP32, our own FP32 kernel
// (kernels/cuda/attention.h).
//
// The FP8 expert-parallel wire format (model/expert_wire.h) is encoded and decoded on the host
// for now (a copy each way): correct, and only on the FP8 dispatch path.
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/cudnn_attention.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/fp8_gemm_cuda.h"
#include "trainer/model/cuda/cuda_memory.h"
#include "trainer/model/ops.h"

namespace baleine::model::cuda {

class CudaOps final : public Ops<float> {
 public:
  explicit CudaOps(CudaMemory& memory);
  ~CudaOps() override;

  std::string name() const override { return "cuda"; }
  kernels::Memory& memory() override { return memory_; }
  bool attention_backward_reads_output() const override { return true; }

  void store_linear_input(LinearInput<float>& in, int64_t first, const float* x, int64_t count,
                          const LinearFormat& f) override;
  void linear_fprop(const LinearFormat& f, const LinearInputView<float>& x, const float* w,
                    float* y, int64_t M, int64_t K, int64_t N) override;
  void linear_dgrad(const LinearFormat& f, const float* dy, const float* w, float* dx, int64_t M,
                    int64_t K, int64_t N, bool accumulate) override;
  void linear_wgrad(const LinearFormat& f, const float* dy, const LinearInputView<float>& x,
                    float* dw, int64_t M, int64_t K, int64_t N) override;
  // Expert Linears grouped: FP32 and BF16 in one cuBLAS launch per call for all experts
  // (kernels/cuda/grouped_gemm.h); FP8 still one block-scaled GEMM per expert (Ops' loop), as
  // there is no grouped FP8 GEMM yet.
  bool groups_expert_linears() const override { return true; }
  void grouped_linear_fprop(const LinearFormat& f, const int64_t* offsets, int64_t experts,
                            const LinearInputView<float>& x, const float* w, float* y, int64_t K,
                            int64_t N) override;
  void grouped_linear_dgrad(const LinearFormat& f, const int64_t* offsets, int64_t experts,
                            const float* dy, const float* w, float* dx, int64_t K, int64_t N,
                            bool accumulate) override;
  void grouped_linear_wgrad(const LinearFormat& f, const int64_t* offsets, int64_t experts,
                            const float* dy, const LinearInputView<float>& x, float* dw,
                            int64_t K, int64_t N) override;
  void linear_forward(const float* x, const float* w, float* y, int64_t M, int64_t K,
                      int64_t N) override;
  void linear_backward_input(const float* dy, const float* w, float* dx, int64_t M, int64_t K,
                             int64_t N) override;
  void linear_backward_weight(const float* dy, const float* x, float* dw, int64_t M, int64_t K,
                              int64_t N) override;

  void add(const float* a, const float* b, float* out, int64_t n) override;
  void swiglu_backward(const float* dh, const float* a, const float* b, float* da, float* db,
                       int64_t n) override;
  void swiglu_into_linear_input(const float* a, const float* b, LinearInput<float>& h,
                                int64_t first, int64_t rows, const LinearFormat& f) override;
  void rmsnorm_forward(const float* x, const float* weight, float* y, float* rstd, int64_t rows,
                       int64_t dim, float eps) override;
  void residual_rmsnorm_forward(const float* x, const float* branch, float* h,
                                const float* weight, float* y, float* rstd, int64_t rows,
                                int64_t dim, float eps) override;
  void rmsnorm_backward(const float* dy, const float* x, const float* weight, const float* rstd,
                        float* dx, float* dweight, int64_t rows, int64_t dim,
                        const float* residual) override;
  void rope_forward(const float* x, float* y, int64_t batch, int64_t seq, int64_t heads,
                    int64_t head_dim, float theta) override;
  void rope_backward(const float* dy, float* dx, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim, float theta) override;
  void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                         int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                         AttentionCore core) override;
  void attention_backward(const float* dout, const float* q, const float* k, const float* v,
                          const float* out, const float* lse, float* dq, float* dk, float* dv,
                          int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                          AttentionCore core) override;
  void embedding_forward(const int32_t* tokens, const float* table, float* out,
                         int64_t n_tokens, int64_t dim) override;
  void embedding_backward(const int32_t* tokens, const float* dout, float* dtable,
                          int64_t n_tokens, int64_t dim) override;
  double cross_entropy_forward(const float* logits, const int32_t* targets, float* lse,
                               int64_t n, int64_t vocab) override;
  void cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                              float scale, float* dlogits, int64_t n, int64_t vocab) override;

  void routing_forward(const float* logits, const float* bias, float* scores, int32_t* chosen,
                       float* weights, kernels::RoutingShape shape,
                       kernels::RoutingOptions options) override;
  void routing_backward(const float* dweights, const float* dscores_extra, const float* scores,
                        const int32_t* chosen, float* dlogits, kernels::RoutingShape shape,
                        kernels::RoutingOptions options) override;
  double seq_balance_loss_forward(const float* scores, const int32_t* chosen,
                                  kernels::RoutingShape shape, int64_t seq_len,
                                  double alpha) override;
  void seq_balance_loss_backward(const float* scores, const int32_t* chosen,
                                 kernels::RoutingShape shape, int64_t seq_len, double alpha,
                                 float dloss, float* dscores) override;
  void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k, int64_t experts,
                          int32_t* expert_offsets, int32_t* row_token,
                          int32_t* assignment_row) override;
  void permute_tokens_forward(const float* x, const int32_t* row_token, float* xe, int64_t rows,
                              int64_t dim) override;
  void permute_tokens_backward(const float* dxe, const int32_t* row_token,
                               const int32_t* assignment_row, float* dx, int64_t tokens,
                               int64_t top_k, int64_t dim) override;
  void combine_forward(const float* ye, const float* weights, const int32_t* assignment_row,
                       float* y, int64_t tokens, int64_t top_k, int64_t dim) override;
  void combine_backward(const float* dy, const float* ye, const float* weights,
                        const int32_t* assignment_row, float* dye, float* dweights,
                        int64_t tokens, int64_t top_k, int64_t dim) override;

  void encode_bf16_rows(const float* rows, int64_t n, int64_t dim,
                        kernels::Array<uint8_t>& wire) override;
  void decode_bf16_rows(const uint8_t* wire, int64_t n, int64_t dim, float* rows) override;
  void encode_fp8_rows(const float* rows, int64_t n, int64_t dim, int64_t tile,
                       kernels::Fp8Format format, kernels::Array<uint8_t>& wire) override;
  void decode_fp8_rows(const uint8_t* wire, int64_t n, int64_t dim, int64_t tile,
                       kernels::Fp8Format format, kernels::Fp8Matrix* out) override;

 private:
  // A device scratch block that grows to the largest request and is reused by the next op (all
  // ops run in order on one stream). Each op uses distinct slots for what it needs at once.
  enum Slot {
    kOperandA, kOperandB, kOperandC, kScalesA, kScalesB, kWorkspace,
    kAttentionBf16,  // the cuDNN attention's BF16 copies (up to eight tensors of q's size)
    kSlots
  };
  template <typename T>
  T* scratch(Slot slot, int64_t count);
  // The FP8 quantization of x [rows, cols] (or of its transpose) into scratch slots.
  kernels::Fp8View quantize(const float* x, int64_t rows, int64_t cols, kernels::Fp8Tile tile,
                            kernels::Fp8Format format, bool power_of_two, bool transposed,
                            Slot codes, Slot scales);
  const float* rope_table(int64_t seq, int64_t head_dim, float theta);
  // cuDNN's fused attention when the core may be BF16 and cuDNN runs this shape here (made on
  // first use; a refusal is noted once on stderr), else nullptr: our FP32 kernel runs.
  kernels::cuda::CudnnAttention* cudnn_attention(AttentionCore core, int64_t batch, int64_t seq,
                                                 int64_t heads, int64_t head_dim);

  CudaMemory& memory_;
  cudaStream_t stream_;
  // x [n] as BF16 in a scratch slot (a GEMM operand).
  const uint16_t* bf16_copy(const float* x, int64_t n, Slot slot);
  // The rows [offsets[0], offsets[experts]) of x (row width `cols`) as BF16, at their own
  // row positions in a scratch slot (rows before offsets[0] unused), so the grouped GEMM takes
  // the same offsets.
  const uint16_t* bf16_rows(const float* x, const int64_t* offsets, int64_t experts,
                            int64_t cols, Slot slot);

  kernels::cuda::GemmContext gemm_;
  kernels::cuda::GroupedGemmContext grouped_;
  std::unique_ptr<kernels::cuda::CudnnAttention> cudnn_attention_;
  bool cudnn_refusal_noted_ = false;
  kernels::CudaFp8GemmWorkspace fp8_gemm_;
  kernels::cuda::DeviceBuffer<uint8_t> slots_[kSlots];
  std::map<std::tuple<int64_t, int64_t, float>, kernels::cuda::DeviceBuffer<float>> rope_tables_;
  kernels::cuda::DeviceBuffer<double> losses_;  // cross-entropy's rows and mean; balance loss
};

}  // namespace baleine::model::cuda
