#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "trainer/model/backend.h"
#include "trainer/model/expert_loop.h"
#include "trainer/model/expert_wire.h"
#include "trainer/model/grouped_experts.h"
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
  // same way, and a checkpoint in global coordinates needs no renaming. Declared matrix by
  // matrix (every local expert's w1, then every w3, then every w2): the store lays a region's
  // tensors out in declaration order, so each matrix of the local experts is one [El, N, K]
  // array, which the grouped expert GEMMs take (grouped_experts.h).
  const auto declare_each_expert = [&](const char* matrix, std::vector<int64_t> shape,
                                       double std, std::vector<Handle>& handles) {
    for (int64_t j = 0; j < exchange_.local_experts(); ++j) {
      const std::string name = prefix + ".experts." + std::to_string(config.expert_begin + j);
      handles.push_back(store.declare(name + "." + matrix, shape, Init::kNormal, std, true,
                                      Placement::kExpert));
    }
  };
  declare_each_expert("w1", {w, d}, config.init_std, expert_w1_);
  declare_each_expert("w3", {w, d}, config.init_std, expert_w3_);
  declare_each_expert("w2", {d, w}, config.out_std, expert_w2_);
  if (config.shared_experts > 0) {
    shared_.emplace_back(store, prefix + ".shared", d, config.shared_experts * w, config.init_std,
                         config.out_std, config.linear);
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
MlpWeights<T> MoeLayer<T>::expert_weights(int64_t j) const {
  return {store_.value(expert_w1_[j]), store_.value(expert_w3_[j]),
          store_.value(expert_w2_[j])};
}

template <typename T>
bool MoeLayer<T>::grouped() const {
  if (!ops<T>().groups_expert_linears() || expert_w1_.empty()) return false;
  if (stacking_checked_) return true;
  // The declarations in the constructor make each matrix one array; check it once the store
  // has laid them out, since the grouped GEMMs would read another expert's weights otherwise.
  for (const auto* handles : {&expert_w1_, &expert_w3_, &expert_w2_}) {
    const auto& entries = store_.entries();
    const ParameterEntry& first = entries[(*handles)[0]];
    for (size_t j = 1; j < handles->size(); ++j) {
      if (entries[(*handles)[j]].offset != first.offset + static_cast<int64_t>(j) * first.size) {
        throw std::logic_error("MoeLayer: the experts' " + first.name +
                               " matrices are not one contiguous array");
      }
    }
  }
  stacking_checked_ = true;
  return true;
}

template <typename T>
MlpWeights<T> MoeLayer<T>::stacked_weights() const {
  return expert_weights(0);
}

template <typename T>
StackedExpertGrads<T> MoeLayer<T>::stacked_grads() {
  return {store_.grad(expert_w1_[0]), store_.grad(expert_w3_[0]), store_.grad(expert_w2_[0])};
}

template <typename T>
ExpertBlocksView MoeLayer<T>::blocks(const typename ExpertExchange<T>::Plan& plan) const {
  return {plan.block_offsets.data(), plan.blocks(), exchange_.local_experts()};
}

template <typename T>
LinearInputView<T> MoeLayer<T>::expert_input(const Saved& s) const {
  if (config_.linear.precision != LinearPrecision::kFp32) return s.expert_x.view();
  LinearInputView<T> v;
  v.values = s.local_x;
  v.rows = s.plan.received_rows;
  v.cols = config_.dim;
  return v;
}

template <typename T>
const T* MoeLayer<T>::move_values(const typename ExpertExchange<T>::Plan& plan, bool to_experts,
                                  const T* rows, Array<T>& out) {
  if (config_.linear.precision == LinearPrecision::kFp32) {
    return to_experts ? exchange_.dispatch(plan, rows, out) : exchange_.combine(plan, rows, out);
  }
  const int64_t d = config_.dim;
  const int64_t sent = to_experts ? plan.sent_rows : plan.received_rows;
  const int64_t received = to_experts ? plan.received_rows : plan.sent_rows;
  ops<T>().encode_bf16_rows(rows, sent, d, send_wire_);
  const uint8_t* wire = to_experts
                            ? exchange_.dispatch_bytes(plan, send_wire_.data(), 2 * d, recv_wire_)
                            : exchange_.combine_bytes(plan, send_wire_.data(), 2 * d, recv_wire_);
  out.resize(static_cast<size_t>(std::max<int64_t>(received * d, 1)));
  ops<T>().decode_bf16_rows(wire, received, d, out.data());
  return out.data();
}

template <typename T>
void MoeLayer<T>::dispatch_inputs(Saved& s, const T* xe) {
  const LinearFormat& f = config_.linear;
  const int64_t d = config_.dim, sent = s.plan.sent_rows, received = s.plan.received_rows;
  int64_t row_bytes = d * static_cast<int64_t>(sizeof(T));
  switch (f.precision) {
    case LinearPrecision::kFp32:
      s.local_x = exchange_.dispatch(s.plan, xe, s.local_x_buffer);
      break;
    case LinearPrecision::kBf16: {
      row_bytes = 2 * d;
      ops<T>().encode_bf16_rows(xe, sent, d, send_wire_);
      const uint8_t* wire = exchange_.dispatch_bytes(s.plan, send_wire_.data(), row_bytes,
                                                     recv_wire_);
      s.expert_x.allocate(received, d, f);
      ops<T>().memory().copy(s.expert_x.bf16.data(), wire,
                      static_cast<size_t>(received * row_bytes));
      break;
    }
    case LinearPrecision::kFp8: {
      row_bytes = fp8_wire_row_bytes(d, f.tile);
      ops<T>().encode_fp8_rows(xe, sent, d, f.tile, f.forward_format, send_wire_);
      const uint8_t* wire = exchange_.dispatch_bytes(s.plan, send_wire_.data(), row_bytes,
                                                     recv_wire_);
      s.expert_x.allocate(received, d, f);
      ops<T>().decode_fp8_rows(wire, received, d, f.tile, f.forward_format, &s.expert_x.fp8);
      break;
    }
  }
  if (counting_) dispatch_bytes_ += sent * row_bytes;
}

template <typename T>
void MoeLayer<T>::forward(const T* x, T* y, BatchShape shape) {
  const int64_t n = shape.tokens(), d = config_.dim, e = config_.routed_experts;
  const int64_t kk = config_.top_k, w = config_.expert_width, rows = n * kk;
  const k::RoutingShape rs{n, e, kk};
  const LinearFormat& f = config_.linear;
  const bool fp32 = f.precision == LinearPrecision::kFp32;
  Saved& s = saved_;
  logits_.resize(n * e);
  s.scores.resize(n * e);
  s.weights.resize(rows);
  s.chosen.resize(rows);
  s.offsets.resize(e + 1);
  s.row_token.resize(rows);
  s.assignment_row.resize(rows);
  // Under FP32 Linears the permuted rows may be the experts' input itself (kept); otherwise
  // they only feed the encoder.
  Array<T>& xe = fp32 ? s.xe : xe_;
  xe.resize(rows * d);

  // Gating stays out of FP8 (DeepSeek-V3 keeps it in high precision).
  s.gate_x.store(x, n, d, config_.gate_linear);
  linear_fprop(config_.gate_linear, s.gate_x.view(), store_.value(gate_), logits_.data(), n, d,
               e);
  bias_in_memory_.assign_from_host(bias_.data(), bias_.size());
  ops<T>().routing_forward(logits_.data(), bias_in_memory_.data(), s.scores.data(), s.chosen.data(),
                           s.weights.data(), rs, config_.routing);
  aux_loss_ = config_.seq_aux_alpha > 0
                  ? ops<T>().seq_balance_loss_forward(s.scores.data(), s.chosen.data(), rs,
                                                      shape.seq, config_.seq_aux_alpha) : 0.0;
  ops<T>().build_expert_index(s.chosen.data(), n, kk, e, s.offsets.data(), s.row_token.data(),
                              s.assignment_row.data());
  // The one host read of the routing: how many rows each expert gets.
  offsets_on_host_.resize(static_cast<size_t>(e + 1));
  ops<T>().memory().to_host(offsets_on_host_.data(), s.offsets.data(),
                  offsets_on_host_.size() * sizeof(int32_t));
  const int32_t* offsets = offsets_on_host_.data();
  if (counting_) {
    for (int64_t ex = 0; ex < e; ++ex) load_[ex] += offsets[ex + 1] - offsets[ex];
  }
  ops<T>().permute_tokens_forward(x, s.row_token.data(), xe.data(), rows, d);

  // Dispatch: rows travel to the ranks holding their experts.
  exchange_.plan(offsets, s.plan);
  dispatch_inputs(s, xe.data());
  const int64_t local_rows = s.plan.received_rows;
  if (counting_) rows_received_ += local_rows;
  s.local_y.resize(std::max<int64_t>(local_rows * d, 1));
  s.experts.resize(local_rows, w, f);
  const LinearInputView<T> local_x = expert_input(s);
  const int64_t local_experts = exchange_.local_experts();
  s.expert_rows.assign(static_cast<size_t>(local_experts), 0);
  for (int64_t j = 0; j < local_experts; ++j) {
    for (const auto& seg : s.plan.segments[j]) s.expert_rows[j] += seg.rows;
  }
  if (grouped()) {
    grouped_experts_forward(f, blocks(s.plan), local_x, s.local_y.data(), local_rows, d, w,
                            stacked_weights(), s.experts);
  } else {
    for_each_expert(s.expert_rows.data(), local_experts, [&](int64_t j) {
      for (const auto& seg : s.plan.segments[j]) {
        const int64_t r0 = seg.first_row;
        swiglu_mlp_forward(f, local_x.row_slice(r0, seg.rows), s.local_y.data() + r0 * d,
                           seg.rows, d, w, expert_weights(j), s.experts, r0);
      }
    });
  }
  // Combine: outputs return to the token's rank, weighted in a fixed (token, slot) order.
  s.ye = move_values(s.plan, false, s.local_y.data(), s.ye_buffer);
  if (counting_) {
    combine_bytes_ += local_rows * d * (fp32 ? static_cast<int64_t>(sizeof(T)) : 2);
  }
  ops<T>().combine_forward(s.ye, s.weights.data(), s.assignment_row.data(), y, n, kk, d);

  if (!shared_.empty()) {
    shared_out_.resize(n * d);
    shared_[0].forward(x, shared_out_.data(), n);
    ops<T>().add(y, shared_out_.data(), y, n * d);
  }
}

template <typename T>
void MoeLayer<T>::backward(const T* dy, T* dx, BatchShape shape, T aux_loss_grad,
                           WeightGradQueue<T>* weight_grads) {
  const int64_t n = shape.tokens(), d = config_.dim, e = config_.routed_experts;
  const int64_t kk = config_.top_k, w = config_.expert_width, rows = n * kk;
  const k::RoutingShape rs{n, e, kk};
  const LinearFormat& f = config_.linear;
  const LinearFormat& fg = config_.gate_linear;
  const Saved& s = saved_;
  dweights_.resize(rows);
  dye_.resize(rows * d);
  dlogits_.resize(n * e);
  dtmp_.resize(n * d);

  ops<T>().combine_backward(dy, s.ye, s.weights.data(), s.assignment_row.data(), dye_.data(),
                            dweights_.data(), n, kk, d);
  // The output gradients take the dispatch path to the experts, the input gradients the
  // combine path back.
  const T* dlocal_y = move_values(s.plan, true, dye_.data(), dlocal_y_buffer_);
  const int64_t local_rows = s.plan.received_rows;
  dlocal_x_.resize(std::max<int64_t>(local_rows * d, 1));
  expert_grads_.resize(std::max<int64_t>(local_rows, 1), w);
  const int64_t local_experts = exchange_.local_experts();
  const bool grouped_experts = grouped();
  if (grouped_experts) {
    grouped_experts_backward_input(f, blocks(s.plan), dlocal_y, dlocal_x_.data(), local_rows, d,
                                   w, stacked_weights(), s.experts.a.data(),
                                   s.experts.b.data(), expert_grads_.da.data(),
                                   expert_grads_.db.data(), expert_grads_.dh.data());
  } else {
    for_each_expert(s.expert_rows.data(), local_experts, [&](int64_t j) {
      for (const auto& seg : s.plan.segments[j]) {
        const int64_t r0 = seg.first_row;
        swiglu_mlp_backward_input(f, dlocal_y + r0 * d, dlocal_x_.data() + r0 * d, seg.rows, d,
                                  w, expert_weights(j), s.experts.a.data() + r0 * w,
                                  s.experts.b.data() + r0 * w, expert_grads_.da.data() + r0 * w,
                                  expert_grads_.db.data() + r0 * w,
                                  expert_grads_.dh.data() + r0 * w);
      }
    });
  }
  const T* dxe = move_values(s.plan, false, dlocal_x_.data(), dxe_buffer_);
  ops<T>().permute_tokens_backward(dxe, s.row_token.data(), s.assignment_row.data(), dx, n, kk, d);

  const T* dscores_extra = nullptr;
  if (config_.seq_aux_alpha > 0) {
    dscores_.assign(n * e, T(0));
    ops<T>().seq_balance_loss_backward(s.scores.data(), s.chosen.data(), rs, shape.seq,
                                       config_.seq_aux_alpha, aux_loss_grad, dscores_.data());
    dscores_extra = dscores_.data();
  }
  ops<T>().routing_backward(dweights_.data(), dscores_extra, s.scores.data(), s.chosen.data(),
                            dlogits_.data(), rs, config_.routing);
  // dx += dlogits·Wgate
  linear_dgrad(fg, dlogits_.data(), store_.value(gate_), dx, n, d, e, true);

  // W: the experts' weights over their segments (in source order), then the gate's.
  const T* dly = kept_for_weight_grad(weight_grads, dlocal_y, local_rows * d);
  const T* da = kept_for_weight_grad(weight_grads, expert_grads_.da.data(), local_rows * w);
  const T* db = kept_for_weight_grad(weight_grads, expert_grads_.db.data(), local_rows * w);
  const T* dlogits = kept_for_weight_grad(weight_grads, dlogits_.data(), n * e);
  // Only views of heap buffers are captured: the Saved struct itself moves between
  // micro-batches.
  weight_grad(weight_grads, [=, segments = s.plan.segments.data(), local_x = expert_input(s),
                             h = s.experts.h.view(), gate_x = s.gate_x.view(),
                             expert_rows = s.expert_rows.data(), expert_blocks = blocks(s.plan)] {
    if (grouped_experts) {
      grouped_experts_backward_weight(f, expert_blocks, dly, local_x, h, da, db, d, w,
                                      stacked_grads());
    } else {
      // An expert's segments accumulate into its gradients in source order, on one thread.
      for_each_expert(expert_rows, local_experts, [&](int64_t j) {
        for (const auto& seg : segments[j]) {
          const int64_t r0 = seg.first_row;
          swiglu_mlp_backward_weight(f, dly + r0 * d, local_x.row_slice(r0, seg.rows),
                                     seg.rows, d, w, h.row_slice(r0, seg.rows), da + r0 * w,
                                     db + r0 * w, store_.grad(expert_w1_[j]),
                                     store_.grad(expert_w3_[j]), store_.grad(expert_w2_[j]));
        }
      });
    }
    linear_wgrad(fg, dlogits, gate_x, store_.grad(gate_), n, d, e);
  });

  if (!shared_.empty()) {
    shared_[0].backward(dy, dtmp_.data(), n, weight_grads);
    ops<T>().add(dx, dtmp_.data(), dx, n * d);
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
  rows_received_ = dispatch_bytes_ = combine_bytes_ = 0;
}

template class MoeLayer<float>;
template class MoeLayer<double>;

}  // namespace baleine::model
