#pragma once
// Softmax cross-entropy over the vocabulary, fused (log-sum-exp, no probability tensor kept).
#include <cstdint>

namespace baleine::kernels {

// logits [n, vocab]; targets [n] in [0, vocab). Writes lse[r] = logsumexp(logits[r]) and
// returns the MEAN loss over the n rows, accumulated in double.
template <typename T>
double cross_entropy_forward(const T* logits, const int32_t* targets, T* lse, int64_t n,
                             int64_t vocab);
// dlogits[r] = scale · (softmax(logits[r]) − onehot(targets[r]))   (overwrites dlogits).
// For d(mean loss)/d logits pass scale = 1/n (times any upstream gradient).
template <typename T>
void cross_entropy_backward(const T* logits, const int32_t* targets, const T* lse, T scale,
                            T* dlogits, int64_t n, int64_t vocab);

}  // namespace baleine::kernels
