#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <numeric>

#include "kernels/gemm.h"
#include "kernels/moe_dispatch.h"

namespace baleine::model {

namespace k = baleine::kernels;

template <typename T>
MoeLayer<T>::MoeLayer(ParameterStore<T>& store, const std::string& prefix,
                      const MoeConfig& config)
    : store_(store), config_(config) {
  const int64_t e = config.routed_experts, d = config.dim, w = config.expert_width;
  gate_ = store.declare(prefix + ".gate", {e, d}, Init::kNormal, config.init_std, false);
  expert_w1_ = store.declare(prefix + ".experts.w1", {e, w, d}, Init::kNormal, config.init_std, true);
  expert_w3_ = store.declare(prefix + ".experts.w3", {e, w, d}, Init::kNormal, config.init_std, true);
  expert_w2_ = store.declare(prefix + ".experts.w2", {e, d, w}, Init::kNormal, config.out_std, true);
  if (config.shared_experts > 0) {
    shared_.emplace_back(store, prefix + ".shared", d, config.shared_experts * w, config.init_std,
                         config.out_std);
  }
  bias_.assign(static_cast<size_t>(e), T(0));
  load_.assign(static_cast<size_t>(e), 0);
}

template <typename T>
void MoeLayer<T>::forward(const T* x, T* y, BatchShape shape) {
  const int64_t n = shape.tokens(), d = config_.dim, e = config_.routed_experts;
  const int64_t kk = config_.top_k, w = config_.expert_width, rows = n * kk;
  const k::RoutingShape rs{n, e, kk};
  logits_.resize(n * e);
  scores_.resize(n * e);
  weights_.resize(rows);
  chosen_.resize(rows);
  offsets_.resize(e + 1);
  row_token_.resize(rows);
  assignment_row_.resize(rows);
  xe_.resize(rows * d);
  ye_.resize(rows * d);
  expert_scratch_.resize(rows, w);

  // Gating stays in high precision (DeepSeek-V3 keeps it out of FP8).
  k::linear_forward(x, store_.value(gate_), logits_.data(), n, d, e);
  k::routing_forward(logits_.data(), bias_.data(), scores_.data(), chosen_.data(),
                     weights_.data(), rs, config_.routing);
  aux_loss_ = config_.seq_aux_alpha > 0
                  ? k::seq_balance_loss_forward(scores_.data(), chosen_.data(), rs, shape.seq,
                                                config_.seq_aux_alpha)
                  : 0.0;
  k::build_expert_index(chosen_.data(), n, kk, e, offsets_.data(), row_token_.data(),
                        assignment_row_.data());
  k::permute_tokens_forward(x, row_token_.data(), xe_.data(), rows, d);

  for (int64_t ex = 0; ex < e; ++ex) {
    const int64_t r0 = offsets_[ex], r1 = offsets_[ex + 1];
    load_[ex] += r1 - r0;
    swiglu_mlp_forward(xe_.data() + r0 * d, ye_.data() + r0 * d, r1 - r0, d, w,
                       store_.value(expert_w1_) + ex * w * d,
                       store_.value(expert_w3_) + ex * w * d,
                       store_.value(expert_w2_) + ex * d * w, expert_scratch_.a.data() + r0 * w,
                       expert_scratch_.b.data() + r0 * w, expert_scratch_.h.data() + r0 * w);
  }
  k::combine_forward(ye_.data(), weights_.data(), assignment_row_.data(), y, n, kk, d);

  if (!shared_.empty()) {
    shared_out_.resize(n * d);
    shared_[0].forward(x, shared_out_.data(), n);
    for (int64_t i = 0; i < n * d; ++i) y[i] += shared_out_[i];
  }
}

template <typename T>
void MoeLayer<T>::backward(const T* dy, const T* x, T* dx, BatchShape shape, T aux_loss_grad) {
  const int64_t n = shape.tokens(), d = config_.dim, e = config_.routed_experts;
  const int64_t kk = config_.top_k, w = config_.expert_width, rows = n * kk;
  const k::RoutingShape rs{n, e, kk};
  dweights_.resize(rows);
  dye_.resize(rows * d);
  dxe_.resize(rows * d);
  dlogits_.resize(n * e);
  dtmp_.resize(n * d);

  k::combine_backward(dy, ye_.data(), weights_.data(), assignment_row_.data(), dye_.data(),
                      dweights_.data(), n, kk, d);
  for (int64_t ex = 0; ex < e; ++ex) {
    const int64_t r0 = offsets_[ex], r1 = offsets_[ex + 1];
    swiglu_mlp_backward(dye_.data() + r0 * d, xe_.data() + r0 * d, dxe_.data() + r0 * d, r1 - r0,
                        d, w, store_.value(expert_w1_) + ex * w * d,
                        store_.value(expert_w3_) + ex * w * d,
                        store_.value(expert_w2_) + ex * d * w, expert_scratch_.a.data() + r0 * w,
                        expert_scratch_.b.data() + r0 * w, expert_scratch_.h.data() + r0 * w,
                        store_.grad(expert_w1_) + ex * w * d,
                        store_.grad(expert_w3_) + ex * w * d,
                        store_.grad(expert_w2_) + ex * d * w, expert_scratch_.da.data() + r0 * w,
                        expert_scratch_.db.data() + r0 * w, expert_scratch_.dh.data() + r0 * w);
  }
  k::permute_tokens_backward(dxe_.data(), row_token_.data(), dx, rows, n, d);

  const T* dscores_extra = nullptr;
  if (config_.seq_aux_alpha > 0) {
    dscores_.assign(n * e, T(0));
    k::seq_balance_loss_backward(scores_.data(), chosen_.data(), rs, shape.seq,
                                 config_.seq_aux_alpha, aux_loss_grad, dscores_.data());
    dscores_extra = dscores_.data();
  }
  k::routing_backward(dweights_.data(), dscores_extra, scores_.data(), chosen_.data(),
                      dlogits_.data(), rs, config_.routing);
  // dx += dlogits·Wgate ; dWgate += dlogitsᵀ·x
  k::gemm<T>(false, false, n, d, e, T(1), dlogits_.data(), e, store_.value(gate_), d, T(1), dx, d);
  k::linear_backward_weight(dlogits_.data(), x, store_.grad(gate_), n, d, e);

  if (!shared_.empty()) {
    shared_[0].backward(dy, x, dtmp_.data(), n);
    for (int64_t i = 0; i < n * d; ++i) dx[i] += dtmp_[i];
  }
}

template <typename T>
double MoeLayer<T>::load_imbalance() const {
  const int64_t total = std::accumulate(load_.begin(), load_.end(), int64_t{0});
  if (total == 0) return 1.0;
  const double mean = static_cast<double>(total) / static_cast<double>(load_.size());
  return static_cast<double>(*std::max_element(load_.begin(), load_.end())) / mean;
}

template <typename T>
void MoeLayer<T>::update_bias(double speed) {
  const int64_t total = std::accumulate(load_.begin(), load_.end(), int64_t{0});
  const double mean = static_cast<double>(total) / static_cast<double>(load_.size());
  for (size_t i = 0; i < load_.size(); ++i) {
    const double l = static_cast<double>(load_[i]);
    // Overloaded experts become less attractive, underloaded ones more (V3 report §2.1.2).
    if (l > mean) bias_[i] -= static_cast<T>(speed);
    else if (l < mean) bias_[i] += static_cast<T>(speed);
  }
  std::fill(load_.begin(), load_.end(), 0);
}

template class MoeLayer<float>;
template class MoeLayer<double>;

}  // namespace baleine::model
