#include "trainer/model/block.h"

#include <cmath>

#include "trainer/model/backend.h"
#include "trainer/model/saved_state.h"

namespace baleine::model {

namespace k = baleine::kernels;

namespace {

// GPT-2-style depth scaling of the projections that write into the residual stream, so the
// stream's variance does not grow with the number of blocks.
double residual_out_std(const config::ModelSection& m) {
  return m.init_std / std::sqrt(2.0 * static_cast<double>(m.layers));
}

kernels::RoutingOptions routing_options(const config::MoeSection& moe) {
  kernels::RoutingOptions o;
  o.score = moe.score == "softmax" ? kernels::ScoreFunction::kSoftmax
                                   : kernels::ScoreFunction::kSigmoid;
  o.normalize = moe.normalize;
  o.route_scale = moe.route_scale;
  o.groups = moe.expert_groups;
  o.max_groups = moe.max_groups_per_token;
  return o;
}

}  // namespace

template <typename T>
TransformerBlock<T>::TransformerBlock(ParameterStore<T>& store, const config::ModelSection& m,
                                      int64_t index, const ModelParallelism& parallelism,
                                      const PrecisionPlan& precision)
    : store_(store),
      dim_(m.hidden),
      norm_eps_(static_cast<T>(m.norm_eps)),
      norm1_(store.declare("blocks." + std::to_string(index) + ".norm1", {m.hidden}, Init::kOnes,
                           0, false)),
      norm2_(store.declare("blocks." + std::to_string(index) + ".norm2", {m.hidden}, Init::kOnes,
                           0, false)),
      attention_(store, "blocks." + std::to_string(index) + ".attention",
                 AttentionConfig{m.hidden, m.heads, m.rope_theta, m.init_std,
                                 residual_out_std(m), precision.for_block(index)}) {
  const std::string prefix = "blocks." + std::to_string(index);
  if (m.is_moe_layer(index)) {
    MoeConfig c;
    c.dim = m.hidden;
    c.routed_experts = m.moe.routed_experts;
    c.shared_experts = m.moe.shared_experts;
    c.top_k = m.moe.top_k;
    c.expert_width = m.moe.intermediate;
    c.routing = routing_options(m.moe);
    c.seq_aux_alpha = m.moe.seq_aux_alpha;
    c.init_std = m.init_std;
    c.out_std = residual_out_std(m);
    c.ep_group = parallelism.ep_group;
    c.expert_begin = parallelism.expert_begin;
    c.linear = precision.for_block(index);
    c.gate_linear = precision.gate();
    moe_ = std::make_unique<MoeLayer<T>>(store, prefix + ".moe", c);
  } else {
    mlp_ = std::make_unique<SwiGluMlp<T>>(store, prefix + ".mlp", m.hidden, m.intermediate,
                                          m.init_std, residual_out_std(m),
                                          precision.for_block(index));
  }
}

template <typename T>
void TransformerBlock<T>::swap_saved(Saved& other) {
  std::swap(saved_, other);
  swap_nested_saved(attention_, saved_.attention, other.attention);
  if (moe_) swap_nested_saved(*moe_, saved_.moe, other.moe);
  else swap_nested_saved(*mlp_, saved_.mlp, other.mlp);
}

template <typename T>
void TransformerBlock<T>::forward(const T* x, T* out, BatchShape shape) {
  const int64_t n = shape.tokens(), nd = n * dim_;
  Saved& s = saved_;
  for (auto* v : {&s.h, &normed_, &branch_}) v->resize(nd);
  s.rstd1.resize(n);
  s.rstd2.resize(n);

  ops<T>().rmsnorm_forward(x, store_.value(norm1_), normed_.data(), s.rstd1.data(), n, dim_,
                           norm_eps_);
  attention_.forward(normed_.data(), branch_.data(), shape);
  // h = x + attention branch, normalised for the FFN in the same pass.
  ops<T>().residual_rmsnorm_forward(x, branch_.data(), s.h.data(), store_.value(norm2_),
                                    normed_.data(), s.rstd2.data(), n, dim_, norm_eps_);
  if (moe_) moe_->forward(normed_.data(), branch_.data(), shape);
  else mlp_->forward(normed_.data(), branch_.data(), n);
  ops<T>().add(s.h.data(), branch_.data(), out, nd);
}

template <typename T>
void TransformerBlock<T>::backward(const T* dout, const T* x, T* dx, BatchShape shape,
                                   T loss_scale, WeightGradQueue<T>* weight_grads) {
  const int64_t n = shape.tokens(), nd = n * dim_;
  const Saved& s = saved_;
  dbranch_.resize(nd);
  dh_.resize(nd);

  // FFN branch: dout flows into the branch and straight through the residual.
  if (moe_) moe_->backward(dout, dbranch_.data(), shape, loss_scale, weight_grads);
  else mlp_->backward(dout, dbranch_.data(), n, weight_grads);
  // dh = the norm's input gradient + dout, which also reaches h through the residual.
  ops<T>().rmsnorm_backward(dbranch_.data(), s.h.data(), store_.value(norm2_), s.rstd2.data(),
                            dh_.data(), store_.grad(norm2_), n, dim_, dout);

  // Attention branch.
  attention_.backward(dh_.data(), dbranch_.data(), shape, weight_grads);
  ops<T>().rmsnorm_backward(dbranch_.data(), x, store_.value(norm1_), s.rstd1.data(), dx,
                            store_.grad(norm1_), n, dim_, dh_.data());
}

template class TransformerBlock<float>;
template class TransformerBlock<double>;

}  // namespace baleine::model
