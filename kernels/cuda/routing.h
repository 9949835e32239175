#pragma once
// DeepSeek-MoE routing on NVIDIA GPUs: the CUDA twin of kernels/routing.h, FP32 only. Same
// contracts (scores, selection rule, weights, overwrite vs accumulate, validation and its
// std::invalid_argument messages); all pointers are DEVICE pointers, work is enqueued on
// `stream` and nothing waits for it (no host synchronization inside an op).
//
// GPU-specific:
//   - Limits (checked, std::invalid_argument): routing_forward / routing_backward need
//     experts <= 256, top_k <= 32, and groups <= 32 when node-limited routing restricts
//     (one warp per token keeps a token's scores in registers, lane g scores group g); the
//     balance loss needs experts <= 2048 (one sequence's expert fractions live in shared
//     memory).
//   - Scores use CUDA's expf (<= 2 ulp) where the CPU uses the C library's exp, so scores and
//     weights agree with the CPU to a few ulp (~1e-6 relative), not bit for bit. Given the same
//     scores, selection and weights are computed exactly as on the CPU (same comparisons, the
//     chosen-score sum in double in slot order), so `chosen` equals the CPU's wherever no two
//     keys (or group keys) lie within rounding of each other; exact ties go to the lower index
//     on both.
//   - A NaN key (NaN logit or bias) ranks as -inf here so that every chosen id stays in
//     range; the CPU's order for NaN keys is unspecified.
//   - seq_balance_loss_forward writes the loss to device memory (a double) instead of returning
//     it, and needs a caller-provided workspace (seq_balance_loss_forward_workspace_bytes).
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/stream.h"
#include "kernels/routing.h"

namespace baleine::kernels::cuda {

// kernels/routing.h routing_forward: logits [tokens, experts]; bias [experts] or nullptr.
// Writes scores [tokens, experts], chosen [tokens, top_k], weights [tokens, top_k].
void routing_forward(const float* logits, const float* bias, float* scores, int32_t* chosen,
                     float* weights, RoutingShape shape, RoutingOptions options,
                     cudaStream_t stream);

// kernels/routing.h routing_backward: dscores_extra may be nullptr; dlogits is overwritten.
void routing_backward(const float* dweights, const float* dscores_extra, const float* scores,
                      const int32_t* chosen, float* dlogits, RoutingShape shape,
                      RoutingOptions options, cudaStream_t stream);

// Bytes of workspace seq_balance_loss_forward needs (one double per sequence).
size_t seq_balance_loss_forward_workspace_bytes(RoutingShape shape, int64_t seq_len);

// kernels/routing.h seq_balance_loss_forward, the loss written to *loss (one device double,
// overwritten; 0 when there are no tokens). `workspace` is device memory of at least
// seq_balance_loss_forward_workspace_bytes, 8-byte aligned, not used by other work meanwhile.
// Chosen ids outside [0, experts) are not counted.
void seq_balance_loss_forward(const float* scores, const int32_t* chosen, RoutingShape shape,
                              int64_t seq_len, double alpha, double* loss, void* workspace,
                              cudaStream_t stream);

// kernels/routing.h seq_balance_loss_backward: dscores += d(loss)/d(scores) · dloss
// (ACCUMULATES). dloss is a host value, as on the CPU.
void seq_balance_loss_backward(const float* scores, const int32_t* chosen, RoutingShape shape,
                               int64_t seq_len, double alpha, float dloss, float* dscores,
                               cudaStream_t stream);

}  // namespace baleine::kernels::cuda
