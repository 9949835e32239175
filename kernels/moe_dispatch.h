#pragma once
// Token permutation for a dropless MoE layer: every (token, slot) assignment becomes one row of
// an expert-sorted buffer, so each expert runs one dense GEMM over its contiguous rows. The same
// index later drives the all-to-all dispatch/combine of expert parallelism.
#include <cstdint>

namespace baleine::kernels {

// From chosen [tokens, top_k] (expert ids in [0, experts)), builds
//   expert_offsets [experts + 1]: rows of expert e are [offsets[e], offsets[e+1])
//   row_token      [tokens·top_k]: the token each sorted row came from
//   assignment_row [tokens·top_k]: for assignment a = t·top_k + j, its row in the sorted buffer
// Stable: within an expert, rows keep token order (deterministic).
void build_expert_index(const int32_t* chosen, int64_t tokens, int64_t top_k, int64_t experts,
                        int32_t* expert_offsets, int32_t* row_token, int32_t* assignment_row);

// xe[r,:] = x[row_token[r], :]
template <typename T>
void permute_tokens_forward(const T* x, const int32_t* row_token, T* xe, int64_t rows,
                            int64_t dim);
// dx[t,:] = Σ_{r: row_token[r]=t} dxe[r,:]   (overwrites all `tokens` rows of dx)
template <typename T>
void permute_tokens_backward(const T* dxe, const int32_t* row_token, T* dx, int64_t rows,
                             int64_t tokens, int64_t dim);

// y[t,:] = Σ_j weights[t,j] · ye[assignment_row[t·top_k+j], :]   (overwrites y)
template <typename T>
void combine_forward(const T* ye, const T* weights, const int32_t* assignment_row, T* y,
                     int64_t tokens, int64_t top_k, int64_t dim);
// dye[row,:] = weights[t,j] · dy[t,:];  dweights[t,j] = <dy[t,:], ye[row,:]>   (both overwritten)
template <typename T>
void combine_backward(const T* dy, const T* ye, const T* weights, const int32_t* assignment_row,
                      T* dye, T* dweights, int64_t tokens, int64_t top_k, int64_t dim);

}  // namespace baleine::kernels
