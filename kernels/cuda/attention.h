#pragma once
// Causal scaled dot-product attention on the GPU, FP32: the CUDA twin of kernels/attention.h,
// with the same layouts and results (to FP32 rounding):
//   q, k, v, out, dout, dq, dk, dv  [batch, seq, heads, head_dim] contiguous,
//   lse                             [batch, heads, seq], lse_i = log Σ_{j<=i} exp(q_i·k_j/√D).
// FlashAttention-style tiles (kernels/cuda/attention.cu): the seq x seq probabilities are never
// stored; the backward recomputes them from q, k and the forward's lse.
//
// head_dim: any value from 1 to kAttentionMaxHeadDim (the kernels pad it to 32, 64 or 128 in
// shared memory); larger values throw std::invalid_argument. No alignment is required.
// Every function is asynchronous on `stream`, allocates nothing and throws std::runtime_error
// when a launch fails. batch, seq or heads <= 0 is a no-op, as on the CPU.
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

constexpr int64_t kAttentionMaxHeadDim = 128;

// out and lse overwritten.
void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                       int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                       cudaStream_t stream);

// Floats of device scratch attention_backward needs: one per query row (delta_i = dout_i·out_i,
// FlashAttention-2's D_i).
int64_t attention_backward_workspace_floats(int64_t batch, int64_t seq, int64_t heads);

// dq, dk, dv overwritten; lse is the forward's. `out` is the forward's output too: the softmax
// backward's row term delta_i = Σ_j P_ij dP_ij equals dout_i·out_i, which costs head_dim
// products instead of seq (the CPU kernel sums P ⊙ dP; the two agree to rounding). `workspace`
// holds attention_backward_workspace_floats(...) floats and may be reused once the stream has
// moved on. Deterministic: no atomics, every sum has a fixed order, so two calls on the same
// inputs give the same bits.
void attention_backward(const float* dout, const float* q, const float* k, const float* v,
                        const float* out, const float* lse, float* dq, float* dk, float* dv,
                        int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                        float* workspace, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
