#pragma once
// CUDA twin of kernels/embedding.h: token embedding lookup and its scatter-add backward.
// Device pointers, FP32; table and dtable are [vocab, dim], ids must lie in [0, vocab)
// (unchecked, as on the CPU). Work is enqueued on `stream`; n_tokens == 0 or dim == 0 enqueues
// nothing.
//
// Determinism: the backward uses no atomics. Each block owns a slice of 16 columns of dtable
// and walks the tokens in order, so every element receives its additions in token order, the
// CPU's order: results are bit-identical to kernels::embedding_backward<float>, run after run.
// Atomics would be somewhat faster (no per-chunk barriers) but add in scheduling order; a
// deterministic alternative through sorting the ids would need a workspace and a radix sort.
// Within a chunk of 128 tokens, repeated ids are found in shared memory and their gradients
// summed by one thread in token order (see kernels/cuda/embedding.cu).
#include <cstdint>

#include "kernels/cuda/stream.h"

namespace baleine::kernels::cuda {

// out[t, :] = table[tokens[t], :], as kernels/embedding.h.
void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t n_tokens,
                       int64_t dim, cudaStream_t stream);
// dtable[tokens[t], :] += dout[t, :] (accumulates; repeated ids add up in token order).
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable,
                        int64_t n_tokens, int64_t dim, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
