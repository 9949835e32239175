#pragma once
// What a forward keeps for its backward, in bytes: the Linears' saved inputs (DeepSeek-V3's
// "activation cache", FP8 under fp8 Linears) apart from everything else (the attention core's
// q, k, v and probabilities, SwiGLU's pre-activations, norms, routing state).
#include <cstdint>
#include <vector>

namespace baleine::model {

struct ActivationBytes {
  int64_t linear_inputs = 0;
  int64_t other = 0;

  ActivationBytes& operator+=(const ActivationBytes& b) {
    linear_inputs += b.linear_inputs;
    other += b.other;
    return *this;
  }
};

template <typename V>
int64_t vector_bytes(const V& v) {
  return static_cast<int64_t>(v.size() * sizeof(typename V::value_type));
}

}  // namespace baleine::model
