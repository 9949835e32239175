#pragma once
// Causal scaled dot-product attention core (after the q/k/v projections and RoPE):
//   out = softmax(q·kᵀ / sqrt(head_dim) + causal mask) · v, per (batch, head).
// q, k, v, out are [batch, seq, heads, head_dim] contiguous (the layout the projections write).
// probs is [batch, heads, seq, seq], written by the forward and read by the backward (entries
// above the diagonal are written as 0).
#include <cstdint>

namespace baleine::kernels {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* probs, int64_t batch,
                       int64_t seq, int64_t heads, int64_t head_dim);
// dq, dk, dv overwritten.
template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        T* dq, T* dk, T* dv, int64_t batch, int64_t seq, int64_t heads,
                        int64_t head_dim);

}  // namespace baleine::kernels
