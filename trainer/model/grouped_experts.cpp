#include "trainer/model/grouped_experts.h"

#include "trainer/model/backend.h"

namespace baleine::model {

template <typename T>
void grouped_experts_forward(const LinearFormat& f, const ExpertBlocksView& blocks,
                             const LinearInputView<T>& x, T* y, int64_t rows, int64_t dim,
                             int64_t width, const MlpWeights<T>& stacked,
                             MlpActivations<T>& acts) {
  if (rows == 0) return;
  Ops<T>& o = ops<T>();
  const int64_t experts = blocks.experts;
  T* a = acts.a.data();
  T* b = acts.b.data();
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_fprop(f, blocks.block(p), experts, x, stacked.w1, a, dim, width);
  }
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_fprop(f, blocks.block(p), experts, x, stacked.w3, b, dim, width);
  }
  o.swiglu_into_linear_input(a, b, acts.h, 0, rows, f);
  const LinearInputView<T> h = acts.h.view();
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_fprop(f, blocks.block(p), experts, h, stacked.w2, y, width, dim);
  }
}

template <typename T>
void grouped_experts_backward_input(const LinearFormat& f, const ExpertBlocksView& blocks,
                                    const T* dy, T* dx, int64_t rows, int64_t dim, int64_t width,
                                    const MlpWeights<T>& stacked, const T* a, const T* b, T* da,
                                    T* db, T* dh) {
  if (rows == 0) return;
  Ops<T>& o = ops<T>();
  const int64_t experts = blocks.experts;
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_dgrad(f, blocks.block(p), experts, dy, stacked.w2, dh, width, dim, false);
  }
  o.swiglu_backward(dh, a, b, da, db, rows * width);
  // dx = da·W1 + db·W3
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_dgrad(f, blocks.block(p), experts, da, stacked.w1, dx, dim, width, false);
  }
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_dgrad(f, blocks.block(p), experts, db, stacked.w3, dx, dim, width, true);
  }
}

template <typename T>
void grouped_experts_backward_weight(const LinearFormat& f, const ExpertBlocksView& blocks,
                                     const T* dy, const LinearInputView<T>& x,
                                     const LinearInputView<T>& h, const T* da, const T* db,
                                     int64_t dim, int64_t width,
                                     const StackedExpertGrads<T>& grads) {
  Ops<T>& o = ops<T>();
  const int64_t experts = blocks.experts;
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_wgrad(f, blocks.block(p), experts, dy, h, grads.w2, width, dim);
  }
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_wgrad(f, blocks.block(p), experts, da, x, grads.w1, dim, width);
  }
  for (int64_t p = 0; p < blocks.blocks; ++p) {
    o.grouped_linear_wgrad(f, blocks.block(p), experts, db, x, grads.w3, dim, width);
  }
}

#define BALEINE_INSTANTIATE(T)                                                                  \
  template void grouped_experts_forward<T>(const LinearFormat&, const ExpertBlocksView&,        \
                                           const LinearInputView<T>&, T*, int64_t, int64_t,     \
                                           int64_t, const MlpWeights<T>&, MlpActivations<T>&);  \
  template void grouped_experts_backward_input<T>(const LinearFormat&, const ExpertBlocksView&, \
                                                  const T*, T*, int64_t, int64_t, int64_t,      \
                                                  const MlpWeights<T>&, const T*, const T*, T*, \
                                                  T*, T*);                                      \
  template void grouped_experts_backward_weight<T>(                                             \
      const LinearFormat&, const ExpertBlocksView&, const T*, const LinearInputView<T>&,       \
      const LinearInputView<T>&, const T*, const T*, int64_t, int64_t,                          \
      const StackedExpertGrads<T>&);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model
