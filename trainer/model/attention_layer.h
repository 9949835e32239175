#pragma once
// Multi-head causal self-attention with RoPE on queries and keys:
//   q,k,v = x·Wqᵀ, x·Wkᵀ, x·Wvᵀ;  q,k ← RoPE(q,k);  o = softmax(qkᵀ/√d + mask)·v;  y = o·Woᵀ.
// (MHA first; DeepSeek-V3's MLA is a later step.)
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model/activation_bytes.h"
#include "trainer/model/linear.h"
#include "trainer/model/ops.h"
#include "trainer/model/parameters.h"
#include "trainer/model/shapes.h"
#include "trainer/model/weight_grad_queue.h"

namespace baleine::model {

struct AttentionConfig {
  int64_t dim = 0;
  int64_t heads = 0;
  double rope_theta = 10000.0;
  double init_std = 0.02;
  double out_std = 0.02;  // output projection, scaled down with depth
  LinearFormat linear;    // the four projections' precision; BF16 or FP8 ones let the
                          // attention core run in BF16 where the backend can (ops.h)
};

template <typename T>
class AttentionLayer {
 public:
  AttentionLayer(ParameterStore<T>& store, const std::string& prefix, const AttentionConfig& c);
  // What the forward keeps for the backward. A pipeline holds one per micro-batch in flight and
  // swaps it in around each call (swap_saved), so one layer object serves them all.
  struct Saved {
    Array<T> q, k, v;  // after RoPE, [tokens, dim]
    // Per query row, the log-sum-exp of its attention scores [batch, heads, seq]: the backward
    // recomputes the probabilities from it (kernels/attention.h) instead of keeping them.
    Array<T> lse;
    LinearInput<T> x, o;  // inputs of Wq/Wk/Wv and of Wo, in the projections' format
    // The attention core's output in T, where the backend's backward reads it
    // (Ops::attention_backward_reads_output); empty elsewhere.
    Array<T> out;
    void add_bytes(ActivationBytes& b) const {
      b.linear_inputs += x.bytes() + o.bytes();
      b.other += vector_bytes(q) + vector_bytes(k) + vector_bytes(v) + vector_bytes(lse) +
                 vector_bytes(out);
    }
  };
  void swap_saved(Saved& other);

  // x, y: [tokens, dim]. Saves what the backward needs (x itself in the Linears' format).
  void forward(const T* x, T* y, BatchShape shape);
  // dx overwritten; parameter gradients accumulated, or queued on weight_grads (then this
  // micro-batch's Saved must stay alive until the queue runs).
  void backward(const T* dy, T* dx, BatchShape shape,
                WeightGradQueue<T>* weight_grads = nullptr);

 private:
  AttentionCore attention_core() const {
    return config_.linear.precision == LinearPrecision::kFp32 ? AttentionCore::kFp32
                                                              : AttentionCore::kBf16;
  }
  ParameterStore<T>& store_;
  AttentionConfig config_;
  typename ParameterStore<T>::Handle wq_, wk_, wv_, wo_;
  Saved saved_;
  Array<T> o_;                  // forward temporary
  Array<T> dq_, dk_, dv_, do_;  // backward temporaries
};

}  // namespace baleine::model
