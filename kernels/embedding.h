#pragma once
// Token embedding lookup. table is [vocab, dim]; tokens are ids in [0, vocab).
#include <cstdint>

namespace baleine::kernels {

// out[t,:] = table[tokens[t], :]
template <typename T>
void embedding_forward(const int32_t* tokens, const T* table, T* out, int64_t n_tokens,
                       int64_t dim);
// dtable[tokens[t], :] += dout[t, :]   (accumulates; repeated ids add up)
template <typename T>
void embedding_backward(const int32_t* tokens, const T* dout, T* dtable, int64_t n_tokens,
                        int64_t dim);

}  // namespace baleine::kernels
