#pragma once
// The CPU backend's operations: each forwards to its kernel in kernels/cpu (or
// to the CPU Linears of model/linear_cpu.h and the wire codecs of
// model/expert_wire.h) with the same arguments, so a model on this backend
// computes exactly what the kernels compute.
#include <string>

#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_dispatch.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/routing.h"
#include "kernels/swiglu.h"
#include "trainer/model/expert_wire.h"
#include "trainer/model/linear_cpu.h"
#include "trainer/model/ops.h"

namespace baleine::model {

template <typename T>
class CpuOps : public Ops<T> {
 public:
  std::string name() const override { return "cpu"; }
  kernels::Memory& memory() override { return kernels::host_memory(); }
  bool attention_backward_reads_output() const override { return false; }

  void store_linear_input(LinearInput<T>& in, int64_t first, const T* x, int64_t count,
                          const LinearFormat& f) override {
    cpu::store_linear_input(in, first, x, count, f);
  }
  void linear_fprop(const LinearFormat& f, const LinearInputView<T>& x, const T* w, T* y, int64_t M,
                    int64_t K, int64_t N) override {
    cpu::linear_fprop(f, x, w, y, M, K, N);
  }
  void linear_dgrad(const LinearFormat& f, const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                    int64_t N, bool accumulate) override {
    cpu::linear_dgrad(f, dy, w, dx, M, K, N, accumulate);
  }
  void linear_wgrad(const LinearFormat& f, const T* dy, const LinearInputView<T>& x, T* dw,
                    int64_t M, int64_t K, int64_t N) override {
    cpu::linear_wgrad(f, dy, x, dw, M, K, N);
  }
  void linear_forward(const T* x, const T* w, T* y, int64_t M, int64_t K, int64_t N) override {
    kernels::linear_forward(x, w, y, M, K, N);
  }
  void linear_backward_input(const T* dy, const T* w, T* dx, int64_t M, int64_t K,
                             int64_t N) override {
    kernels::linear_backward_input(dy, w, dx, M, K, N);
  }
  void linear_backward_weight(const T* dy, const T* x, T* dw, int64_t M, int64_t K,
                              int64_t N) override {
    kernels::linear_backward_weight(dy, x, dw, M, K, N);
  }
  void add(const T* a, const T* b, T* out, int64_t n) override {
    kernels::add(a, b, out, n);
  }
  void swiglu_backward(const T* dh, const T* a, const T* b, T* da, T* db, int64_t n) override {
    kernels::swiglu_backward(dh, a, b, da, db, n);
  }
  void swiglu_into_linear_input(const T* a, const T* b, LinearInput<T>& h, int64_t first,
                                int64_t rows, const LinearFormat& f) override {
    cpu::swiglu_into_linear_input(a, b, h, first, rows, f);
  }
  void rmsnorm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t dim,
                       T eps) override {
    kernels::rmsnorm_forward(x, weight, y, rstd, rows, dim, eps);
  }
  void residual_rmsnorm_forward(const T* x, const T* branch, T* h, const T* weight, T* y, T* rstd,
                                int64_t rows, int64_t dim, T eps) override {
    kernels::residual_rmsnorm_forward(x, branch, h, weight, y, rstd, rows, dim, eps);
  }
  void rmsnorm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx, T* dweight,
                        int64_t rows, int64_t dim, const T* residual) override {
    kernels::rmsnorm_backward(dy, x, weight, rstd, dx, dweight, rows, dim, residual);
  }
  void rope_forward(const T* x, T* y, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                    T theta) override {
    kernels::rope_forward(x, y, batch, seq, heads, head_dim, theta);
  }
  void rope_backward(const T* dy, T* dx, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim, T theta) override {
    kernels::rope_backward(dy, dx, batch, seq, heads, head_dim, theta);
  }
  void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, int64_t batch,
                         int64_t seq, int64_t heads, int64_t head_dim,
                         AttentionCore /*FP32 always*/) override {
    kernels::attention_forward(q, k, v, out, lse, batch, seq, heads, head_dim);
  }
  void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* /*out*/,
                          const T* lse, T* dq, T* dk, T* dv, int64_t batch, int64_t seq,
                          int64_t heads, int64_t head_dim, AttentionCore /*FP32 always*/) override {
    kernels::attention_backward(dout, q, k, v, lse, dq, dk, dv, batch, seq, heads, head_dim);
  }
  void embedding_forward(const int32_t* tokens, const T* table, T* out, int64_t n_tokens,
                         int64_t dim) override {
    kernels::embedding_forward(tokens, table, out, n_tokens, dim);
  }
  void embedding_backward(const int32_t* tokens, const T* dout, T* dtable, int64_t n_tokens,
                          int64_t dim) override {
    kernels::embedding_backward(tokens, dout, dtable, n_tokens, dim);
  }
  double cross_entropy_forward(const T* logits, const int32_t* targets, T* lse, int64_t n,
                               int64_t vocab) override {
    return kernels::cross_entropy_forward(logits, targets, lse, n, vocab);
  }
  void cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T scale,
                              T* dlogits, int64_t n, int64_t vocab) override {
    kernels::cross_entropy_backward(logits, targets, lse, scale, dlogits, n, vocab);
  }
  void routing_forward(const T* logits, const T* bias, T* scores, int32_t* chosen, T* weights,
                       kernels::RoutingShape shape, kernels::RoutingOptions options) override {
    kernels::routing_forward(logits, bias, scores, chosen, weights, shape, options);
  }
  void routing_backward(const T* dweights, const T* dscores_extra, const T* scores,
                        const int32_t* chosen, T* dlogits, kernels::RoutingShape shape,
                        kernels::RoutingOptions options) override {
    kernels::routing_backward(dweights, dscores_extra, scores, chosen, dlogits, shape, options);
  }
  double seq_balance_loss_forward(const T* scores, const int32_t* chosen,
                                  kernels::RoutingShape shape, int64_t seq_len,
                                  double alpha) override {
    return kernels::seq_balance_loss_forward(scores, chosen, shape, seq_len, alpha);
  }
  void seq_balance_loss_backward(const T* scores, const int32_t* chosen,
                                 kernels::RoutingShape shape, int64_t seq_len, double alpha,
                                 T dloss, T* dscores) override {
    kernels::seq_balance_loss_backward(scores, chosen, shape, seq_len, alpha, dloss, dscores);
  }
  void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k, int64_t experts,
                          int32_t* expert_offsets, int32_t* row_token,
                          int32_t* assignment_row) override {
    kernels::build_expert_index(chosen, tokens, top_k, experts, expert_offsets, row_token,
                                assignment_row);
  }
  void permute_tokens_forward(const T* x, const int32_t* row_token, T* xe, int64_t rows,
                              int64_t dim) override {
    kernels::permute_tokens_forward(x, row_token, xe, rows, dim);
  }
  void permute_tokens_backward(const T* dxe, const int32_t* row_token,
                               const int32_t* /*assignment_row*/, T* dx, int64_t tokens,
                               int64_t top_k, int64_t dim) override {
    kernels::permute_tokens_backward(dxe, row_token, dx, tokens * top_k, tokens, dim);
  }
  void combine_forward(const T* ye, const T* weights, const int32_t* assignment_row, T* y,
                       int64_t tokens, int64_t top_k, int64_t dim) override {
    kernels::combine_forward(ye, weights, assignment_row, y, tokens, top_k, dim);
  }
  void combine_backward(const T* dy, const T* ye, const T* weights, const int32_t* assignment_row,
                        T* dye, T* dweights, int64_t tokens, int64_t top_k, int64_t dim) override {
    kernels::combine_backward(dy, ye, weights, assignment_row, dye, dweights, tokens, top_k, dim);
  }
  void encode_bf16_rows(const T* rows, int64_t n, int64_t dim,
                        kernels::Array<uint8_t>& wire) override {
    model::encode_bf16_rows(rows, n, dim, wire);
  }
  void decode_bf16_rows(const uint8_t* wire, int64_t n, int64_t dim, T* rows) override {
    model::decode_bf16_rows(wire, n, dim, rows);
  }
  void encode_fp8_rows(const T* rows, int64_t n, int64_t dim, int64_t tile,
                       kernels::Fp8Format format, kernels::Array<uint8_t>& wire) override {
    model::encode_fp8_rows(rows, n, dim, tile, format, wire);
  }
  void decode_fp8_rows(const uint8_t* wire, int64_t n, int64_t dim, int64_t tile,
                       kernels::Fp8Format format, kernels::Fp8Matrix* out) override {
    model::decode_fp8_rows(wire, n, dim, tile, format, out);
  }
};

}  // namespace baleine::model
