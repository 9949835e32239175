#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <numeric>

#include "kernels/gemm.h"
#include "kernels/moe_dispatch.h"
#include "trainer/model/saved_state.h"

namespace baleine::model {

namespace k = baleine::kernels;

template <typename T>
MoeLayer<T>::MoeLayer(ParameterStore<T>& store, const std::string& prefix,
                      const MoeConfig& config)
    : store_(store),
      config_(config),
      exchange_(config.ep_group, config.routed_experts, config.dim) {
  const int64_t e = config.routed_experts, d = config.dim, w = config.expert_width;
  gate_ = store.declare(prefix + ".gate", {e, d}, Init::kNormal, config.init_std, false);
  // One parameter per expert, named by its GLOBAL index: any layout initialises expert e the
  // same way, and a checkpoint in global coordinates needs no renaming.
  for (int64_t j = 0; j < exchange_.local_experts(); ++j) {
    const std::string name = prefix + ".experts." + std::to_string(config.expert_begin + j);
    expert_w1_.push_back(store.declare(name + ".w1", {w, d}, Init::kNormal, config.init_std,
                                       true, Placement::kExpert));
    expert_w3_.push_back(store.declare(name + ".w3", {w, d}, Init::kNormal, config.init_std,
                                       true, Placement::kExpert));
    expert_w2_.push_back(store.declare(name + ".w2", {d, w}, Init::kNormal, config.out_std,
                                       true, Placement::kExpert));
  }
  if (config.shared_experts > 0) {
    shared_.emplace_back(store, prefix + ".shared", d, config.shared_experts * w, config.init_std,
                         config.out_std);
  }
  bias_.assign(static_cast<size_t>(e), T(0));
  load_.assign(static_cast<size_t>(e), 0);
}

template <typename T>
void MoeLayer<T>::swap_saved(Saved& other) {
  std::swap(saved_, other);
  if (!shared_.empty()) swap_nested_saved(shared_[0], saved_.shared, other.shared);
}

template <typename T>
void MoeLayer<T>::forward(const T* x, T* y, BatchShape shape) {
  const int64_t n = shape.tokens(), d = config_.dim, e = config_.routed_experts;
  const int64_t kk = config_.top_k, w = config_.expert_width, rows = n * kk;
  const k::RoutingShape rs{n, e, kk};
  Saved& s = saved_;
  logits_.resize(n * e);
  s.scores.resize(n * e);
  s.weights.resize(rows);
  s.chosen.resize(rows);
  s.offsets.resize(e + 1);
  s.row_token.resize(rows);
  s.assignment_row.resize(rows);
  s.xe.resize(rows * d);

  // Gating stays in high precision (DeepSeek-V3 keeps it out of FP8).
  k::linear_forward(x, store_.value(gate_), logits_.data(), n, d, e);
  k::routing_forward(logits_.data(), bias_.data(), s.scores.data(), s.chosen.data(),
                     s.weights.data(), rs, config_.routing);
  aux_loss_ = config_.seq_aux_alpha > 0
                  ? k::seq_balance_loss_forward(s.scores.data(), s.chosen.data(), rs, shape.seq,
                                                config_.seq_aux_alpha)
                  : 0.0;
  k::build_expert_index(s.chosen.data(), n, kk, e, s.offsets.data(), s.row_token.data(),
                        s.assignment_row.data());
  if (counting_) {
    for (int64_t ex = 0; ex < e; ++ex) load_[ex] += s.offsets[ex + 1] - s.offsets[ex];
  }
  k::permute_tokens_forward(x, s.row_token.data(), s.xe.data(), rows, d);

  // Dispatch: rows travel to the ranks holding their experts.
  exchange_.plan(s.offsets.data(), s.plan);
  s.local_x = exchange_.dispatch(s.plan, s.xe.data(), s.local_x_buffer);
  const int64_t local_rows = s.plan.received_rows;
  if (counting_) rows_received_ += local_rows;
  s.local_y.resize(std::max<int64_t>(local_rows * d, 1));
  s.experts.resize(std::max<int64_t>(local_rows, 1), w);
  for (int64_t j = 0; j < exchange_.local_experts(); ++j) {
    for (const auto& seg : s.plan.segments[j]) {
      const int64_t r0 = seg.first_row;
      swiglu_mlp_forward(s.local_x + r0 * d, s.local_y.data() + r0 * d, seg.rows, d, w,
                         store_.value(expert_w1_[j]), store_.value(expert_w3_[j]),
                         store_.value(expert_w2_[j]), s.experts.a.data() + r0 * w,
                         s.experts.b.data() + r0 * w, s.experts.h.data() + r0 * w);
    }
  }
  // Combine: outputs return to the token's rank, weighted in a fixed (token, slot) order.
  s.ye = exchange_.combine(s.plan, s.local_y.data(), s.ye_buffer);
  k::combine_forward(s.ye, s.weights.data(), s.assignment_row.data(), y, n, kk, d);

  if (!shared_.empty()) {
    shared_out_.resize(n * d);
    shared_[0].forward(x, shared_out_.data(), n);
    for (int64_t i = 0; i < n * d; ++i) y[i] += shared_out_[i];
  }
}

template <typename T>
void MoeLayer<T>::backward(const T* dy, const T* x, T* dx, BatchShape shape, T aux_loss_grad,
                           WeightGradQueue<T>* weight_grads) {
  const int64_t n = shape.tokens(), d = config_.dim, e = config_.routed_experts;
  const int64_t kk = config_.top_k, w = config_.expert_width, rows = n * kk;
  const k::RoutingShape rs{n, e, kk};
  const Saved& s = saved_;
  dweights_.resize(rows);
  dye_.resize(rows * d);
  dlogits_.resize(n * e);
  dtmp_.resize(n * d);

  k::combine_backward(dy, s.ye, s.weights.data(), s.assignment_row.data(), dye_.data(),
                      dweights_.data(), n, kk, d);
  // The output gradients take the dispatch path to the experts, the input gradients the
  // combine path back.
  const T* dlocal_y = exchange_.dispatch(s.plan, dye_.data(), dlocal_y_buffer_);
  const int64_t local_rows = s.plan.received_rows;
  dlocal_x_.resize(std::max<int64_t>(local_rows * d, 1));
  expert_grads_.resize(std::max<int64_t>(local_rows, 1), w);
  for (int64_t j = 0; j < exchange_.local_experts(); ++j) {
    for (const auto& seg : s.plan.segments[j]) {
      const int64_t r0 = seg.first_row;
      swiglu_mlp_backward_input(dlocal_y + r0 * d, dlocal_x_.data() + r0 * d, seg.rows, d, w,
                                store_.value(expert_w1_[j]), store_.value(expert_w3_[j]),
                                store_.value(expert_w2_[j]), s.experts.a.data() + r0 * w,
                                s.experts.b.data() + r0 * w, expert_grads_.da.data() + r0 * w,
                                expert_grads_.db.data() + r0 * w,
                                expert_grads_.dh.data() + r0 * w);
    }
  }
  const T* dxe = exchange_.combine(s.plan, dlocal_x_.data(), dxe_buffer_);
  k::permute_tokens_backward(dxe, s.row_token.data(), dx, rows, n, d);

  const T* dscores_extra = nullptr;
  if (config_.seq_aux_alpha > 0) {
    dscores_.assign(n * e, T(0));
    k::seq_balance_loss_backward(s.scores.data(), s.chosen.data(), rs, shape.seq,
                                 config_.seq_aux_alpha, aux_loss_grad, dscores_.data());
    dscores_extra = dscores_.data();
  }
  k::routing_backward(dweights_.data(), dscores_extra, s.scores.data(), s.chosen.data(),
                      dlogits_.data(), rs, config_.routing);
  // dx += dlogits·Wgate
  k::gemm<T>(false, false, n, d, e, T(1), dlogits_.data(), e, store_.value(gate_), d, T(1), dx, d);

  // W: the experts' weights over their segments (in source order), then the gate's.
  const T* dly = kept_for_weight_grad(weight_grads, dlocal_y, local_rows * d);
  const T* da = kept_for_weight_grad(weight_grads, expert_grads_.da.data(), local_rows * w);
  const T* db = kept_for_weight_grad(weight_grads, expert_grads_.db.data(), local_rows * w);
  const T* dlogits = kept_for_weight_grad(weight_grads, dlogits_.data(), n * e);
  // Only heap pointers are captured: the Saved struct itself moves between micro-batches.
  weight_grad(weight_grads, [=, segments = s.plan.segments.data(), local_x = s.local_x,
                             h = s.experts.h.data()] {
    for (int64_t j = 0; j < exchange_.local_experts(); ++j) {
      for (const auto& seg : segments[j]) {
        const int64_t r0 = seg.first_row;
        swiglu_mlp_backward_weight(dly + r0 * d, local_x + r0 * d, seg.rows, d, w,
                                   h + r0 * w, da + r0 * w, db + r0 * w,
                                   store_.grad(expert_w1_[j]), store_.grad(expert_w3_[j]),
                                   store_.grad(expert_w2_[j]));
      }
    }
    k::linear_backward_weight(dlogits, x, store_.grad(gate_), n, d, e);
  });

  if (!shared_.empty()) {
    shared_[0].backward(dy, x, dtmp_.data(), n, weight_grads);
    for (int64_t i = 0; i < n * d; ++i) dx[i] += dtmp_[i];
  }
}

double load_imbalance(const std::vector<int64_t>& load) {
  const int64_t total = std::accumulate(load.begin(), load.end(), int64_t{0});
  if (total == 0) return 1.0;
  const double mean = static_cast<double>(total) / static_cast<double>(load.size());
  return static_cast<double>(*std::max_element(load.begin(), load.end())) / mean;
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
  rows_received_ = 0;
}

template class MoeLayer<float>;
template class MoeLayer<double>;

}  // namespace baleine::model
