#pragma once
// Multi-head causal self-attention with RoPE on queries and keys:
//   q,k,v = x·Wqᵀ, x·Wkᵀ, x·Wvᵀ;  q,k ← RoPE(q,k);  o = softmax(qkᵀ/√d + mask)·v;  y = o·Woᵀ.
// (MHA first; DeepSeek-V3's MLA is a later step.)
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/model/parameters.h"
#include "trainer/model/shapes.h"

namespace baleine::model {

struct AttentionConfig {
  int64_t dim = 0;
  int64_t heads = 0;
  double rope_theta = 10000.0;
  double init_std = 0.02;
  double out_std = 0.02;  // output projection, scaled down with depth
};

template <typename T>
class AttentionLayer {
 public:
  AttentionLayer(ParameterStore<T>& store, const std::string& prefix, const AttentionConfig& c);
  // x, y: [tokens, dim]. Saves what the backward needs.
  void forward(const T* x, T* y, BatchShape shape);
  // dx overwritten; parameter gradients accumulated. x is the forward's input.
  void backward(const T* dy, const T* x, T* dx, BatchShape shape);

 private:
  ParameterStore<T>& store_;
  AttentionConfig config_;
  typename ParameterStore<T>::Handle wq_, wk_, wv_, wo_;
  std::vector<T> q_, k_, v_, probs_, o_;      // saved activations
  std::vector<T> dq_, dk_, dv_, do_;          // backward temporaries
};

}  // namespace baleine::model
