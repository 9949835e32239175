#include "trainer/model/swiglu_mlp.h"

#include "kernels/gemm.h"
#include "kernels/swiglu.h"

namespace baleine::model {

namespace k = baleine::kernels;

template <typename T>
void MlpScratch<T>::resize(int64_t rows, int64_t width) {
  const size_t n = static_cast<size_t>(rows * width);
  for (auto* v : {&a, &b, &h, &da, &db, &dh}) {
    if (v->size() < n) v->resize(n);
  }
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
void swiglu_mlp_backward(const T* dy, const T* x, T* dx, int64_t rows, int64_t dim,
                         int64_t width, const T* w1, const T* w3, const T* w2, const T* a,
                         const T* b, const T* h, T* dw1, T* dw3, T* dw2, T* da, T* db, T* dh) {
  if (rows == 0) return;
  k::linear_backward_input(dy, w2, dh, rows, width, dim);
  k::linear_backward_weight(dy, h, dw2, rows, width, dim);
  k::swiglu_backward(dh, a, b, da, db, rows * width);
  // dx = da·W1 + db·W3
  k::linear_backward_input(da, w1, dx, rows, dim, width);
  k::gemm<T>(false, false, rows, dim, width, T(1), db, width, w3, dim, T(1), dx, dim);
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
  scratch_.resize(rows, width_);
  swiglu_mlp_forward(x, y, rows, dim_, width_, store_.value(w1_), store_.value(w3_),
                     store_.value(w2_), scratch_.a.data(), scratch_.b.data(), scratch_.h.data());
}

template <typename T>
void SwiGluMlp<T>::backward(const T* dy, const T* x, T* dx, int64_t rows) {
  swiglu_mlp_backward(dy, x, dx, rows, dim_, width_, store_.value(w1_), store_.value(w3_),
                      store_.value(w2_), scratch_.a.data(), scratch_.b.data(), scratch_.h.data(),
                      store_.grad(w1_), store_.grad(w3_), store_.grad(w2_), scratch_.da.data(),
                      scratch_.db.data(), scratch_.dh.data());
}

#define BALEINE_INSTANTIATE(T)                                                                 \
  template struct MlpScratch<T>;                                                               \
  template class SwiGluMlp<T>;                                                                 \
  template void swiglu_mlp_forward<T>(const T*, T*, int64_t, int64_t, int64_t, const T*,      \
                                      const T*, const T*, T*, T*, T*);                         \
  template void swiglu_mlp_backward<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,      \
                                       const T*, const T*, const T*, const T*, const T*,       \
                                       const T*, T*, T*, T*, T*, T*, T*);
BALEINE_INSTANTIATE(float)
BALEINE_INSTANTIATE(double)
#undef BALEINE_INSTANTIATE

}  // namespace baleine::model
