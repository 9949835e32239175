#include "trainer/model/swiglu_mlp.h"

#include "trainer/model/backend.h"

#include <algorithm>

namespace baleine::model {

namespace {
template <typename T>
void grow(int64_t rows, int64_t width, Array<T>* a, Array<T>* b, Array<T>* c = nullptr) {
  const size_t n = static_cast<size_t>(rows * width);
  for (auto* v : {a, b, c}) {
    if (v && v->size() < n) v->resize(n);
  }
}
}  // namespace

template <typename T>
void MlpActivations<T>::resize(int64_t rows, int64_t width, const LinearFormat& format) {
  grow(std::max<int64_t>(rows, 1), width, &a, &b);
  h.allocate(rows, width, format);
}

template <typename T>
void MlpGradients<T>::resize(int64_t rows, int64_t width) {
  grow(rows, width, &da, &db, &dh);
}

template <typename T>
void swiglu_mlp_forward(const LinearFormat& f, const LinearInputView<T>& x, T* y, int64_t rows,
                        int64_t dim, int64_t width, const MlpWeights<T>& w,
                        MlpActivations<T>& acts, int64_t first) {
  if (rows == 0) return;
  T* a = acts.a.data() + first * width;
  T* b = acts.b.data() + first * width;
  linear_fprop(f, x, w.w1, a, rows, dim, width);
  linear_fprop(f, x, w.w3, b, rows, dim, width);
  ops<T>().swiglu_into_linear_input(a, b, acts.h, first, rows, f);
  linear_fprop(f, acts.h.view().row_slice(first, rows), w.w2, y, rows, width, dim);
}

template <typename T>
void swiglu_mlp_backward_input(const LinearFormat& f, const T* dy, T* dx, int64_t rows,
                               int64_t dim, int64_t width, const MlpWeights<T>& w, const T* a,
                               const T* b, T* da, T* db, T* dh) {
  if (rows == 0) return;
  linear_dgrad(f, dy, w.w2, dh, rows, width, dim, false);
  ops<T>().swiglu_backward(dh, a, b, da, db, rows * width);
  // dx = da·W1 + db·W3
  linear_dgrad(f, da, w.w1, dx, rows, dim, width, false);
  linear_dgrad(f, db, w.w3, dx, rows, dim, width, true);
}

template <typename T>
void swiglu_mlp_backward_weight(const LinearFormat& f, const T* dy, const LinearInputView<T>& x,
                                int64_t rows, int64_t dim, int64_t width,
                                const LinearInputView<T>& h, const T* da, const T* db, T* dw1,
                                T* dw3, T* dw2) {
  if (rows == 0) return;
  linear_wgrad(f, dy, h, dw2, rows, width, dim);
  linear_wgrad(f, da, x, dw1, rows, dim, width);
  linear_wgrad(f, db, x, dw3, rows, dim, width);
}

template <typename T>
SwiGluMlp<T>::SwiGluMlp(ParameterStore<T>& store, const std::string& prefix, int64_t dim,
                        int64_t width, double init_std, double out_std,
                        const LinearFormat& format)
    : store_(store), dim_(dim), width_(width), format_(format) {
  w1_ = store.declare(prefix + ".w1", {width, dim}, Init::kNormal, init_std, true);
  w3_ = store.declare(prefix + ".w3", {width, dim}, Init::kNormal, init_std, true);
  w2_ = store.declare(prefix + ".w2", {dim, width}, Init::kNormal, out_std, true);
}

template <typename T>
MlpWeights<T> SwiGluMlp<T>::weights() const {
  return {store_.value(w1_), store_.value(w3_), store_.value(w2_)};
}

template <typename T>
void SwiGluMlp<T>::forward(const T* x, T* y, int64_t rows) {
  saved_.x.store(x, rows, dim_, format_);
  saved_.acts.resize(rows, width_, format_);
  swiglu_mlp_forward(format_, saved_.x.view(), y, rows, dim_, width_, weights(), saved_.acts,
                     0);
}

template <typename T>
void SwiGluMlp<T>::backward(const T* dy, T* dx, int64_t rows, WeightGradQueue<T>* weight_grads) {
  grads_.resize(rows, width_);
  swiglu_mlp_backward_input(format_, dy, dx, rows, dim_, width_, weights(),
                            saved_.acts.a.data(), saved_.acts.b.data(), grads_.da.data(),
                            grads_.db.data(), grads_.dh.data());
  const int64_t n = rows * width_;
  const T* dy_w = kept_for_weight_grad(weight_grads, dy, rows * dim_);
  const T* da = kept_for_weight_grad(weight_grads, grads_.da.data(), n);
  const T* db = kept_for_weight_grad(weight_grads, grads_.db.data(), n);
  weight_grad(weight_grads, [=, f = format_, x = saved_.x.view(), h = saved_.acts.h.view()] {
    swiglu_mlp_backward_weight(f, dy_w, x, rows, dim_, width_, h, da, db, store_.grad(w1_),
                               store_.grad(w3_), store_.grad(w2_));
  });
}

#define BALEINE_INSTANTIATE(T)                                                                 \
  template struct MlpActivations<T>;                                                           \
  template struct MlpGradients<T>;                                                             \
  template class SwiGluMlp<T>;                                                                 \
  template void swiglu_mlp_forward<T>(const LinearFormat&, const LinearInputView<T>&, T*,      \
                                      int64_t, int64_t, int64_t, const MlpWeights<T>&,         \
                                      MlpActivations<T>&, int64_t);                            \
  template void swiglu_mlp_backward_input<T>(const LinearFormat&, const T*, T*, int64_t,       \
                                             int64_t, int64_t, const MlpWeights<T>&, const T*, \
                                             const T*, T*, T*, T*);                            \
  template void swiglu_mlp_backward_weight<T>(const LinearFormat&, const T*,                   \
                                              const LinearInputView<T>&, int64_t, int64_t,     \
                                              int64_t, const LinearInputView<T>&, const T*,    \
                                              const T*, T*, T*, T*);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model
