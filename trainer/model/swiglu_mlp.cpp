#include "trainer/model/swiglu_mlp.h"

#include "kernels/gemm.h"
#include "kernels/swiglu.h"

namespace baleine::model {

namespace k = baleine::kernels;

namespace {
template <typename T>
void grow(int64_t rows, int64_t width, std::vector<T>* a, std::vector<T>* b, std::vector<T>* c) {
  const size_t n = static_cast<size_t>(rows * width);
  for (auto* v : {a, b, c}) {
    if (v->size() < n) v->resize(n);
  }
}
}  // namespace

template <typename T>
void MlpActivations<T>::resize(int64_t rows, int64_t width) {
  grow(rows, width, &a, &b, &h);
}

template <typename T>
void MlpGradients<T>::resize(int64_t rows, int64_t width) {
  grow(rows, width, &da, &db, &dh);
}

template <typename T>
void swiglu_mlp_forward(const T* x, T* y, int64_t rows, int64_t dim, int64_t width, const T* w1,
                        const T* w3, const T* w2, T* a, T* b, T* h) {
  if (rows == 0) return;
  k::linear_forward(x, w1, a, rows, dim, width);
  k::linear_forward(x, w3, b, rows, dim, width);
  k::swiglu_forward(a, b, h, rows * width);
  k::linear_forward(h, w2, y, rows, width, dim);
}

template <typename T>
void swiglu_mlp_backward_input(const T* dy, T* dx, int64_t rows, int64_t dim, int64_t width,
                               const T* w1, const T* w3, const T* w2, const T* a, const T* b,
                               T* da, T* db, T* dh) {
  if (rows == 0) return;
  k::linear_backward_input(dy, w2, dh, rows, width, dim);
  k::swiglu_backward(dh, a, b, da, db, rows * width);
  // dx = da·W1 + db·W3
  k::linear_backward_input(da, w1, dx, rows, dim, width);
  k::gemm<T>(false, false, rows, dim, width, T(1), db, width, w3, dim, T(1), dx, dim);
}

template <typename T>
void swiglu_mlp_backward_weight(const T* dy, const T* x, int64_t rows, int64_t dim,
                                int64_t width, const T* h, const T* da, const T* db, T* dw1,
                                T* dw3, T* dw2) {
  if (rows == 0) return;
  k::linear_backward_weight(dy, h, dw2, rows, width, dim);
  k::linear_backward_weight(da, x, dw1, rows, dim, width);
  k::linear_backward_weight(db, x, dw3, rows, dim, width);
}

template <typename T>
SwiGluMlp<T>::SwiGluMlp(ParameterStore<T>& store, const std::string& prefix, int64_t dim,
                        int64_t width, double init_std, double out_std)
    : store_(store), dim_(dim), width_(width) {
  w1_ = store.declare(prefix + ".w1", {width, dim}, Init::kNormal, init_std, true);
  w3_ = store.declare(prefix + ".w3", {width, dim}, Init::kNormal, init_std, true);
  w2_ = store.declare(prefix + ".w2", {dim, width}, Init::kNormal, out_std, true);
}

template <typename T>
void SwiGluMlp<T>::forward(const T* x, T* y, int64_t rows) {
  saved_.resize(rows, width_);
  swiglu_mlp_forward(x, y, rows, dim_, width_, store_.value(w1_), store_.value(w3_),
                     store_.value(w2_), saved_.a.data(), saved_.b.data(), saved_.h.data());
}

template <typename T>
void SwiGluMlp<T>::backward(const T* dy, const T* x, T* dx, int64_t rows,
                            WeightGradQueue<T>* weight_grads) {
  grads_.resize(rows, width_);
  swiglu_mlp_backward_input(dy, dx, rows, dim_, width_, store_.value(w1_), store_.value(w3_),
                            store_.value(w2_), saved_.a.data(), saved_.b.data(),
                            grads_.da.data(), grads_.db.data(), grads_.dh.data());
  const int64_t n = rows * width_;
  const T* dy_w = kept_for_weight_grad(weight_grads, dy, rows * dim_);
  const T* da = kept_for_weight_grad(weight_grads, grads_.da.data(), n);
  const T* db = kept_for_weight_grad(weight_grads, grads_.db.data(), n);
  weight_grad(weight_grads, [=, h = saved_.h.data()] {
    swiglu_mlp_backward_weight(dy_w, x, rows, dim_, width_, h, da, db, store_.grad(w1_),
                               store_.grad(w3_), store_.grad(w2_));
  });
}

#define BALEINE_INSTANTIATE(T)                                                                 \
  template struct MlpActivations<T>;                                                           \
  template struct MlpGradients<T>;                                                             \
  template class SwiGluMlp<T>;                                                                 \
  template void swiglu_mlp_forward<T>(const T*, T*, int64_t, int64_t, int64_t, const T*,      \
                                      const T*, const T*, T*, T*, T*);                         \
  template void swiglu_mlp_backward_input<T>(const T*, T*, int64_t, int64_t, int64_t,         \
                                             const T*, const T*, const T*, const T*,           \
                                             const T*, T*, T*, T*);                            \
  template void swiglu_mlp_backward_weight<T>(const T*, const T*, int64_t, int64_t, int64_t,  \
                                              const T*, const T*, const T*, T*, T*, T*);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model
