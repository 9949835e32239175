#pragma once
// The routed experts' SwiGLU MLPs over all the rows a MoE layer received, one grouped Linear
// per weight matrix (model/ops.h: grouped_linear_*) instead of one MLP per expert: on a GPU a
// launch for all local experts rather than a loop of small GEMMs (issue 6; kernels/cuda/
// grouped_gemm.h). The model takes this path when its backend groups expert Linears.
//
// The rows arrive in blocks, one per expert-parallel source (model/expert_exchange.h: source
// major, sorted by expert inside a block), so each matrix takes one grouped call per block.
// Weight gradients accumulate block by block in source order: expert e's gradient sums its
// rows in the same order as the per-expert loop (moe_layer.cpp), which the tests hold to the
// CPU's bits. The elementwise SwiGLU runs once over all rows; it is row-wise, so its bits do
// not depend on how the rows are grouped.
#include <cstdint>

#include "trainer/model/linear.h"
#include "trainer/model/swiglu_mlp.h"

namespace baleine::model {

// Row offsets of the received rows: block p's local expert j owns rows
// [offsets[p·(experts+1) + j], offsets[p·(experts+1) + j + 1]). HOST memory; a view, so a
// deferred weight-gradient job may capture it (the plan that owns the offsets outlives it).
struct ExpertBlocksView {
  const int64_t* offsets = nullptr;
  int64_t blocks = 0;
  int64_t experts = 0;
  const int64_t* block(int64_t p) const { return offsets + p * (experts + 1); }
};

// Each matrix of the local experts as one array: w1, w3 [experts, width, dim], w2 [experts,
// dim, width] (MoeLayer declares them so; parameters.h lays them out contiguously).
template <typename T>
struct StackedExpertGrads {
  T *w1, *w3, *w2;
};

// y (rows × dim) = the experts' MLPs of x; fills acts (a, b, h) for all `rows` rows.
template <typename T>
void grouped_experts_forward(const LinearFormat& f, const ExpertBlocksView& blocks,
                             const LinearInputView<T>& x, T* y, int64_t rows, int64_t dim,
                             int64_t width, const MlpWeights<T>& stacked,
                             MlpActivations<T>& acts);

// dx overwritten; da, db (for the weight gradients) and the scratch dh cover all rows.
template <typename T>
void grouped_experts_backward_input(const LinearFormat& f, const ExpertBlocksView& blocks,
                                    const T* dy, T* dx, int64_t rows, int64_t dim, int64_t width,
                                    const MlpWeights<T>& stacked, const T* a, const T* b, T* da,
                                    T* db, T* dh);

// dw1 += daᵀ·x, dw3 += dbᵀ·x, dw2 += dyᵀ·h, expert by expert, blocks in source order.
template <typename T>
void grouped_experts_backward_weight(const LinearFormat& f, const ExpertBlocksView& blocks,
                                     const T* dy, const LinearInputView<T>& x,
                                     const LinearInputView<T>& h, const T* da, const T* db,
                                     int64_t dim, int64_t width,
                                     const StackedExpertGrads<T>& grads);

}  // namespace baleine::model
