#pragma once
// Causal scaled dot-product attention core (after the q/k/v projections and RoPE):
//   out = softmax(q·kᵀ / sqrt(head_dim) + causal mask) · v, per (batch, head).
// q, k, v, out are [batch, seq, heads, head_dim] contiguous (the layout the projections write).
//
// Memory: the seq x seq probabilities are never kept. The forward saves one number per query
// row, lse [batch, heads, seq] = log Σ_{j<=i} exp(q_i·k_j / sqrt(head_dim)), and the backward
// recomputes each block of probabilities from q, k and lse (FlashAttention, Dao et al. 2022,
// arXiv 2205.14135, §3.1), so a micro-batch keeps batch·heads·seq values instead of
// batch·heads·seq². Blocks entirely above the diagonal are skipped, not computed and masked.
#include <cstdint>

namespace baleine::kernels {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim);
// dq, dk, dv overwritten. lse is the forward's.
template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* lse,
                        T* dq, T* dk, T* dv, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim);

}  // namespace baleine::kernels
