#pragma once
// Token permutation for a dropless MoE layer on NVIDIA GPUs: the CUDA twin of
// kernels/moe_dispatch.h, FP32 only. Same contracts (index layout, stability, overwrite);
// all pointers are DEVICE pointers, work is enqueued on `stream` and nothing waits for it.
//
// GPU-specific:
//   - build_expert_index runs entirely on the device and needs a caller-provided workspace
//     (build_expert_index_workspace_bytes). expert_offsets stays in device memory: a caller that
//     needs row counts on the host (GEMM sizes, all-to-all splits) copies it back itself.
//     Supports experts <= 1024. It cannot throw on a bad expert id without waiting for the
//     device, so an id outside [0, experts) (a bug upstream) is dropped instead: its
//     assignment_row is -1, expert_offsets[experts] counts only the valid assignments (compare
//     it with tokens·top_k to detect the bug) and the unused tail of row_token is -1.
//     The kernels below treat row -1 / token -1 as "no row": permute_tokens_forward writes a
//     zero row, the others skip it (combine_backward writes dweights 0).
//   - permute_tokens_backward takes the inverse index (assignment_row, tokens, top_k) instead of
//     row_token: each dx row is then summed by one thread from its top_k rows in ascending row
//     order, exactly the CPU's order, with no atomics (deterministic, and bit-identical to the
//     CPU). It assumes the dropless layout rows = tokens·top_k. Supports top_k <= 64.
//   - combine_backward's dweights are dot products accumulated in double, as on the CPU.
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/stream.h"
#include "kernels/moe_dispatch.h"

namespace baleine::kernels::cuda {

// Bytes of workspace build_expert_index needs: per chunk of 2048 assignments, one int32 per
// expert.
size_t build_expert_index_workspace_bytes(int64_t tokens, int64_t top_k, int64_t experts);

// kernels/moe_dispatch.h build_expert_index. `workspace`: device memory of at least
// build_expert_index_workspace_bytes bytes, 4-byte aligned, not used by other work meanwhile.
void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k, int64_t experts,
                        int32_t* expert_offsets, int32_t* row_token, int32_t* assignment_row,
                        void* workspace, cudaStream_t stream);

// xe[r,:] = x[row_token[r], :]   (overwrites xe)
void permute_tokens_forward(const float* x, const int32_t* row_token, float* xe, int64_t rows,
                            int64_t dim, cudaStream_t stream);

// dx[t,:] = Σ_j dxe[assignment_row[t·top_k+j], :]   (overwrites all `tokens` rows of dx);
// the same sum as kernels/moe_dispatch.h permute_tokens_backward, indexed from the token side.
void permute_tokens_backward(const float* dxe, const int32_t* assignment_row, float* dx,
                             int64_t tokens, int64_t top_k, int64_t dim, cudaStream_t stream);

// y[t,:] = Σ_j weights[t,j] · ye[assignment_row[t·top_k+j], :]   (overwrites y)
void combine_forward(const float* ye, const float* weights, const int32_t* assignment_row,
                     float* y, int64_t tokens, int64_t top_k, int64_t dim, cudaStream_t stream);

// dye[row,:] = weights[t,j] · dy[t,:];  dweights[t,j] = <dy[t,:], ye[row,:]>   (both overwritten)
void combine_backward(const float* dy, const float* ye, const float* weights,
                      const int32_t* assignment_row, float* dye, float* dweights, int64_t tokens,
                      int64_t top_k, int64_t dim, cudaStream_t stream);

}  // namespace baleine::kernels::cuda
