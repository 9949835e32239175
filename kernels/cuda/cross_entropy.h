#pragma once
// CUDA twin of kernels/cross_entropy.h: softmax cross-entropy over the vocabulary, FP32 logits.
// Device pointers; work is enqueued on `stream`. Deterministic: fixed reduction orders, no
// atomics.
//
// GPU-specific: the forward does not return the mean loss (that would wait for the device).
// It writes it to a device double, next to the per-row losses, for the caller to read when it
// needs it. A target outside [0, vocab) gives its row a NaN loss (and no −scale term in the
// backward) instead of reading out of bounds; the CPU leaves that case undefined.
//
// Agreement with the CPU kernels: same formulas and precisions (max in FP32, Σ exp in FP64,
// lse = max + log Σ in FP64, the mean of the FP64 row losses), but exp is CUDA's expf and the
// CPU's is its own vector_exp, each within 2 ulp of e^x, and the sums run in other orders:
// results agree to ~1e-7 relative, not bit for bit (tests/kernels/cross_entropy_cuda_test.cpp).
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// logits [n, vocab]; targets [n]. Writes lse[r] = logsumexp(logits[r]) (FP32, as the CPU) and
// row_loss[r] = lse_r − logits[r, target_r] (FP64); when mean_loss is not null,
// *mean_loss = Σ row_loss / n. n == 0 writes *mean_loss = 0 (as the CPU returns) and nothing
// else. Throws std::invalid_argument for vocab < 1 with n > 0.
void cross_entropy_forward(const float* logits, const int32_t* targets, float* lse,
                           double* row_loss, double* mean_loss, int64_t n, int64_t vocab,
                           cudaStream_t stream);

// dlogits[r] = scale · (softmax(logits[r]) − onehot(targets[r])), overwritten, as
// kernels::cross_entropy_backward (softmax re-formed from the saved lse).
void cross_entropy_backward(const float* logits, const int32_t* targets, const float* lse,
                            float scale, float* dlogits, int64_t n, int64_t vocab,
                            cudaStream_t stream);

}  // namespace baleine::kernels::cuda
