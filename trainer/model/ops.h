#pragma once
// The operations a model runs, behind one interface per scalar type: the seam between the
// layers and a backend. The CPU backend (cpu_ops.cpp) calls the kernels in kernels/cpu, the
// CUDA backend (model/cuda/) their twins in kernels/cuda. Layers are written once against
// Ops<T>; every pointer an op takes lives in the backend's memory (kernels/memory.h), and
// results a layer reads on the host (losses) come back as plain values.
//
// Arguments follow the kernels' own (kernels/*.h), so the CPU backend is a forwarder and a CPU
// model computes the same bits as before the seam existed. The Linear-level operations take a
// LinearFormat and do what model/linear.h describes (FP32, BF16 or FP8 GEMMs).
//
// ops<T>() is the current backend's (backend.h).
#include <cstdint>
#include <string>

#include "kernels/array.h"
#include "kernels/fp8_quantize.h"
#include "kernels/routing.h"
#include "trainer/model/linear.h"

namespace baleine::model {

// The precision the attention core may run in. kBf16 lets a backend use a BF16 fused kernel
// (the CUDA backend: cuDNN's flash attention, Q, K, V, O and the gradients rounded to BF16,
// FP32 softmax statistics) when the layer's Linears are BF16 or FP8 anyway: DeepSeek-V3 keeps
// the attention core in BF16 under FP8 training (report §3.3). kFp32 asks for FP32. The CPU
// computes in FP32 either way: it is the reference the GPU is checked against.
enum class AttentionCore { kFp32, kBf16 };

template <typename T>
class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string name() const = 0;
  virtual kernels::Memory& memory() = 0;

  // --- Linears (model/linear.h) ---
  // Rows [first, first + count) of `in` (allocated for its format) from x (count × in.cols).
  virtual void store_linear_input(LinearInput<T>& in, int64_t first, const T* x, int64_t count,
                                  const LinearFormat& f) = 0;
  virtual void linear_fprop(const LinearFormat& f, const LinearInputView<T>& x, const T* w, T* y,
                            int64_t M, int64_t K, int64_t N) = 0;
  virtual void linear_dgrad(const LinearFormat& f, const T* dy, const T* w, T* dx, int64_t M,
                            int64_t K, int64_t N, bool accumulate) = 0;
  virtual void linear_wgrad(const LinearFormat& f, const T* dy, const LinearInputView<T>& x,
                            T* dw, int64_t M, int64_t K, int64_t N) = 0;
  // The same three GEMMs for every local routed expert at once (model/grouped_experts.h):
  // w, dw are [experts, N, K] (expert e's [N, K] at e·N·K) and expert e's rows of x, y, dy, dx
  // are [offsets[e], offsets[e + 1]) (HOST memory, experts + 1 entries, absolute row indices).
  // A backend that groups them (one launch for all experts) says so; the model then calls these
  // instead of a Linear per expert. The defaults are that loop, with the same calls in expert
  // order, so a backend that only overrides groups_expert_linears() computes the loop's bits.
  virtual bool groups_expert_linears() const { return false; }
  virtual void grouped_linear_fprop(const LinearFormat& f, const int64_t* offsets,
                                    int64_t experts, const LinearInputView<T>& x, const T* w,
                                    T* y, int64_t K, int64_t N) {
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t first = offsets[e], rows = offsets[e + 1] - offsets[e];
      linear_fprop(f, x.row_slice(first, rows), w + e * N * K, y + first * N, rows, K, N);
    }
  }
  virtual void grouped_linear_dgrad(const LinearFormat& f, const int64_t* offsets,
                                    int64_t experts, const T* dy, const T* w, T* dx, int64_t K,
                                    int64_t N, bool accumulate) {
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t first = offsets[e], rows = offsets[e + 1] - offsets[e];
      linear_dgrad(f, dy + first * N, w + e * N * K, dx + first * K, rows, K, N, accumulate);
    }
  }
  virtual void grouped_linear_wgrad(const LinearFormat& f, const int64_t* offsets,
                                    int64_t experts, const T* dy, const LinearInputView<T>& x,
                                    T* dw, int64_t K, int64_t N) {
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t first = offsets[e], rows = offsets[e + 1] - offsets[e];
      linear_wgrad(f, dy + first * N, x.row_slice(first, rows), dw + e * N * K, rows, K, N);
    }
  }

  // The head's FP32 GEMMs (kernels/gemm.h).
  virtual void linear_forward(const T* x, const T* w, T* y, int64_t M, int64_t K, int64_t N) = 0;
  virtual void linear_backward_input(const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                                     int64_t N) = 0;
  virtual void linear_backward_weight(const T* dy, const T* x, T* dw, int64_t M, int64_t K,
                                      int64_t N) = 0;

  // --- elementwise, norms, embedding, attention, loss (kernels/*.h) ---
  virtual void add(const T* a, const T* b, T* out, int64_t n) = 0;
  virtual void swiglu_backward(const T* dh, const T* a, const T* b, T* da, T* db, int64_t n) = 0;
  // h = silu(a) ⊙ b for `rows` rows of width h.cols, stored as rows [first, first + rows) of
  // the Linear input h in its format.
  virtual void swiglu_into_linear_input(const T* a, const T* b, LinearInput<T>& h, int64_t first,
                                        int64_t rows, const LinearFormat& f) = 0;
  virtual void rmsnorm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows,
                               int64_t dim, T eps) = 0;
  virtual void residual_rmsnorm_forward(const T* x, const T* branch, T* h, const T* weight, T* y,
                                        T* rstd, int64_t rows, int64_t dim, T eps) = 0;
  virtual void rmsnorm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx,
                                T* dweight, int64_t rows, int64_t dim,
                                const T* residual = nullptr) = 0;
  virtual void rope_forward(const T* x, T* y, int64_t batch, int64_t seq, int64_t heads,
                            int64_t head_dim, T theta) = 0;
  virtual void rope_backward(const T* dy, T* dx, int64_t batch, int64_t seq, int64_t heads,
                             int64_t head_dim, T theta) = 0;
  virtual void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                                 int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                 AttentionCore core) = 0;
  // Whether attention_backward reads the forward's output (`out`): the CUDA kernel does
  // (FlashAttention's rowsum(dO ∘ O)), the CPU one recomputes what it needs. Layers keep the
  // output for the backward only where it is read.
  virtual bool attention_backward_reads_output() const = 0;
  virtual void attention_backward(const T* dout, const T* q, const T* k, const T* v,
                                  const T* out, const T* lse, T* dq, T* dk, T* dv, int64_t batch,
                                  int64_t seq, int64_t heads, int64_t head_dim,
                                  AttentionCore core) = 0;
  virtual void embedding_forward(const int32_t* tokens, const T* table, T* out, int64_t n_tokens,
                                 int64_t dim) = 0;
  virtual void embedding_backward(const int32_t* tokens, const T* dout, T* dtable,
                                  int64_t n_tokens, int64_t dim) = 0;
  // The mean loss over the n rows, on the host.
  virtual double cross_entropy_forward(const T* logits, const int32_t* targets, T* lse,
                                       int64_t n, int64_t vocab) = 0;
  virtual void cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse,
                                      T scale, T* dlogits, int64_t n, int64_t vocab) = 0;

  // --- MoE routing and token movement (kernels/routing.h, kernels/moe_dispatch.h) ---
  virtual void routing_forward(const T* logits, const T* bias, T* scores, int32_t* chosen,
                               T* weights, kernels::RoutingShape shape,
                               kernels::RoutingOptions options) = 0;
  virtual void routing_backward(const T* dweights, const T* dscores_extra, const T* scores,
                                const int32_t* chosen, T* dlogits, kernels::RoutingShape shape,
                                kernels::RoutingOptions options) = 0;
  // The balance loss, on the host.
  virtual double seq_balance_loss_forward(const T* scores, const int32_t* chosen,
                                          kernels::RoutingShape shape, int64_t seq_len,
                                          double alpha) = 0;
  virtual void seq_balance_loss_backward(const T* scores, const int32_t* chosen,
                                         kernels::RoutingShape shape, int64_t seq_len,
                                         double alpha, T dloss, T* dscores) = 0;
  virtual void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k,
                                  int64_t experts, int32_t* expert_offsets, int32_t* row_token,
                                  int32_t* assignment_row) = 0;
  virtual void permute_tokens_forward(const T* x, const int32_t* row_token, T* xe, int64_t rows,
                                      int64_t dim) = 0;
  // row_token and assignment_row are build_expert_index's two views of the same permutation;
  // each backend reads the one its kernel gathers by (rows = tokens · top_k).
  virtual void permute_tokens_backward(const T* dxe, const int32_t* row_token,
                                       const int32_t* assignment_row, T* dx, int64_t tokens,
                                       int64_t top_k, int64_t dim) = 0;
  virtual void combine_forward(const T* ye, const T* weights, const int32_t* assignment_row, T* y,
                               int64_t tokens, int64_t top_k, int64_t dim) = 0;
  virtual void combine_backward(const T* dy, const T* ye, const T* weights,
                                const int32_t* assignment_row, T* dye, T* dweights,
                                int64_t tokens, int64_t top_k, int64_t dim) = 0;

  // --- the expert-parallel wire formats (model/expert_wire.h) ---
  virtual void encode_bf16_rows(const T* rows, int64_t n, int64_t dim,
                                kernels::Array<uint8_t>& wire) = 0;
  virtual void decode_bf16_rows(const uint8_t* wire, int64_t n, int64_t dim, T* rows) = 0;
  virtual void encode_fp8_rows(const T* rows, int64_t n, int64_t dim, int64_t tile,
                               kernels::Fp8Format format, kernels::Array<uint8_t>& wire) = 0;
  virtual void decode_fp8_rows(const uint8_t* wire, int64_t n, int64_t dim, int64_t tile,
                               kernels::Fp8Format format, kernels::Fp8Matrix* out) = 0;
};

}  // namespace baleine::model
