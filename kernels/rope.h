#pragma once
// Rotary position embedding (Su et al. 2021, RoFormer). x is [batch, seq, heads, head_dim];
// the pair (x[2i], x[2i+1]) of every head at position p is rotated by the angle
// p · theta^(-2i/head_dim). head_dim must be even. x and y may alias (in place).
#include <cstdint>

namespace baleine::kernels {

template <typename T>
void rope_forward(const T* x, T* y, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                  T theta);
// The rotation is orthogonal, so the backward rotates by the negative angle. dx, dy may alias.
template <typename T>
void rope_backward(const T* dy, T* dx, int64_t batch, int64_t seq, int64_t heads,
                   int64_t head_dim, T theta);

}  // namespace baleine::kernels
