#pragma once
// CUDA twin of kernels/rope.h: rotary position embedding on x [batch, seq, heads, head_dim],
// the pair (x[2i], x[2i+1]) of every head at position p rotated by p · theta^(-2i/head_dim).
// Device pointers, FP32; work is enqueued on `stream`; empty shapes enqueue nothing.
//
// The angles come from a table, as on the CPU (kernels/cpu/rope.cpp keeps one per thread):
// cos and sin of every (position, pair) computed in double and rounded once to float, so the
// GPU rotates by the CPU's angles (CUDA's double pow/sin/cos are within 2 ulp of double, far
// below float's rounding). The table depends only on (seq, head_dim, theta): the caller builds
// it once with rope_build_table and passes it to every call. Computing the angles in double per
// element instead would cost ~100 double operations per pair, more than the rotation's memory
// traffic on any GPU, and far more on those with slow FP64.
// Deterministic: every output element depends on its own pair and angle only.
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// Floats of the table for positions [0, seq) and this head_dim: seq · head_dim (a cos and a
// sin per pair, interleaved: table[2·(p·head_dim/2 + i)] = cos, [+1] = sin).
int64_t rope_table_floats(int64_t seq, int64_t head_dim);
// Fills `table` (rope_table_floats(seq, head_dim) floats, 8-byte aligned). head_dim even.
void rope_build_table(float* table, int64_t seq, int64_t head_dim, float theta,
                      cudaStream_t stream);

// y = x rotated, as kernels/rope.h; x and y may alias (in place). `table` is from
// rope_build_table for at least `seq` positions, this head_dim and the run's theta.
void rope_forward(const float* x, float* y, const float* table, int64_t batch, int64_t seq,
                  int64_t heads, int64_t head_dim, cudaStream_t stream);
// dx = dy rotated by the negative angles (the rotation is orthogonal); dx, dy may alias.
void rope_backward(const float* dy, float* dx, const float* table, int64_t batch, int64_t seq,
                   int64_t heads, int64_t head_dim, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
