#include "trainer/model/attention_layer.h"

#include "trainer/model/backend.h"

namespace baleine::model {

template <typename T>
AttentionLayer<T>::AttentionLayer(ParameterStore<T>& store, const std::string& prefix,
                                  const AttentionConfig& c)
    : store_(store), config_(c) {
  const int64_t d = c.dim;
  wq_ = store.declare(prefix + ".wq", {d, d}, Init::kNormal, c.init_std, true);
  wk_ = store.declare(prefix + ".wk", {d, d}, Init::kNormal, c.init_std, true);
  wv_ = store.declare(prefix + ".wv", {d, d}, Init::kNormal, c.init_std, true);
  wo_ = store.declare(prefix + ".wo", {d, d}, Init::kNormal, c.out_std, true);
}

template <typename T>
void AttentionLayer<T>::swap_saved(Saved& other) {
  std::swap(saved_, other);
}

template <typename T>
void AttentionLayer<T>::forward(const T* x, T* y, BatchShape shape) {
  const int64_t n = shape.tokens(), d = config_.dim, h = config_.heads, hd = d / h;
  const size_t nd = static_cast<size_t>(n * d);
  const LinearFormat& f = config_.linear;
  Saved& s = saved_;
  for (auto* v : {&s.q, &s.k, &s.v, &o_}) v->resize(nd);
  s.lse.resize(static_cast<size_t>(shape.batch * h * shape.seq));
  const T theta = static_cast<T>(config_.rope_theta);

  s.x.store(x, n, d, f);
  const LinearInputView<T> xv = s.x.view();
  linear_fprop(f, xv, store_.value(wq_), s.q.data(), n, d, d);
  linear_fprop(f, xv, store_.value(wk_), s.k.data(), n, d, d);
  linear_fprop(f, xv, store_.value(wv_), s.v.data(), n, d, d);
  ops<T>().rope_forward(s.q.data(), s.q.data(), shape.batch, shape.seq, h, hd, theta);
  ops<T>().rope_forward(s.k.data(), s.k.data(), shape.batch, shape.seq, h, hd, theta);
  T* out = o_.data();
  if (ops<T>().attention_backward_reads_output()) {
    s.out.resize(nd);
    out = s.out.data();
  }
  ops<T>().attention_forward(s.q.data(), s.k.data(), s.v.data(), out, s.lse.data(), shape.batch,
                             shape.seq, h, hd, attention_core());
  s.o.store(out, n, d, f);
  linear_fprop(f, s.o.view(), store_.value(wo_), y, n, d, d);
}

template <typename T>
void AttentionLayer<T>::backward(const T* dy, T* dx, BatchShape shape,
                                 WeightGradQueue<T>* weight_grads) {
  const int64_t n = shape.tokens(), d = config_.dim, h = config_.heads, hd = d / h;
  const size_t nd = static_cast<size_t>(n * d);
  for (auto* v : {&dq_, &dk_, &dv_, &do_}) v->resize(nd);
  const T theta = static_cast<T>(config_.rope_theta);
  const LinearFormat& f = config_.linear;
  const Saved& s = saved_;

  linear_dgrad(f, dy, store_.value(wo_), do_.data(), n, d, d, false);
  ops<T>().attention_backward(do_.data(), s.q.data(), s.k.data(), s.v.data(), s.out.data(),
                              s.lse.data(), dq_.data(), dk_.data(), dv_.data(), shape.batch,
                              shape.seq, h, hd, attention_core());
  ops<T>().rope_backward(dq_.data(), dq_.data(), shape.batch, shape.seq, h, hd, theta);
  ops<T>().rope_backward(dk_.data(), dk_.data(), shape.batch, shape.seq, h, hd, theta);
  // dx = dq·Wq + dk·Wk + dv·Wv
  linear_dgrad(f, dq_.data(), store_.value(wq_), dx, n, d, d, false);
  linear_dgrad(f, dk_.data(), store_.value(wk_), dx, n, d, d, true);
  linear_dgrad(f, dv_.data(), store_.value(wv_), dx, n, d, d, true);

  // W: dWo += dyᵀ·o ; dWq += dqᵀ·x ; dWk += dkᵀ·x ; dWv += dvᵀ·x
  const T* dy_w = kept_for_weight_grad(weight_grads, dy, n * d);
  const T* dq = kept_for_weight_grad(weight_grads, dq_.data(), n * d);
  const T* dk = kept_for_weight_grad(weight_grads, dk_.data(), n * d);
  const T* dv = kept_for_weight_grad(weight_grads, dv_.data(), n * d);
  weight_grad(weight_grads, [=, x = s.x.view(), o = s.o.view()] {
    linear_wgrad(f, dy_w, o, store_.grad(wo_), n, d, d);
    linear_wgrad(f, dq, x, store_.grad(wq_), n, d, d);
    linear_wgrad(f, dk, x, store_.grad(wk_), n, d, d);
    linear_wgrad(f, dv, x, store_.grad(wv_), n, d, d);
  });
}

template class AttentionLayer<float>;
template class AttentionLayer<double>;

}  // namespace baleine::model
