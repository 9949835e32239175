#include "trainer/model/model.h"

#include <algorithm>

#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/rmsnorm.h"

namespace baleine::model {

namespace k = baleine::kernels;

template <typename T>
Model<T>::Model(const config::ModelSection& c, uint64_t seed, const ModelParallelism& parallelism)
    : config_(c) {
  embedding_ = store_.declare("embedding", {c.vocab_size, c.hidden}, Init::kNormal, c.init_std,
                              false);
  for (int64_t l = 0; l < c.layers; ++l) {
    blocks_.push_back(std::make_unique<TransformerBlock<T>>(store_, c, l, parallelism));
  }
  final_norm_ = store_.declare("final_norm", {c.hidden}, Init::kOnes, 0, false);
  head_ = store_.declare("head", {c.vocab_size, c.hidden}, Init::kNormal, c.init_std, true);
  store_.allocate(seed);
}

template <typename T>
ForwardResult Model<T>::forward(const int32_t* inputs, const int32_t* targets, BatchShape shape) {
  const int64_t n = shape.tokens(), d = config_.hidden, v = config_.vocab_size;
  shape_ = shape;
  inputs_.assign(inputs, inputs + n);
  targets_.assign(targets, targets + n);
  residual_.resize(blocks_.size() + 1);
  for (auto& r : residual_) r.resize(n * d);
  xf_.resize(n * d);
  rstd_f_.resize(n);
  logits_.resize(n * v);
  lse_.resize(n);

  k::embedding_forward(inputs, store_.value(embedding_), residual_[0].data(), n, d);
  ForwardResult result;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    blocks_[l]->forward(residual_[l].data(), residual_[l + 1].data(), shape);
    if (auto* moe = blocks_[l]->moe()) result.aux_loss += moe->aux_loss();
  }
  k::rmsnorm_forward(residual_.back().data(), store_.value(final_norm_), xf_.data(),
                     rstd_f_.data(), n, d, static_cast<T>(config_.norm_eps));
  k::linear_forward(xf_.data(), store_.value(head_), logits_.data(), n, d, v);
  result.loss = k::cross_entropy_forward(logits_.data(), targets, lse_.data(), n, v);
  return result;
}

template <typename T>
void Model<T>::backward(T loss_scale) {
  const int64_t n = shape_.tokens(), d = config_.hidden, v = config_.vocab_size;
  dlogits_.resize(n * v);
  dxf_.resize(n * d);
  dstream_.resize(n * d);
  dstream_next_.resize(n * d);

  k::cross_entropy_backward(logits_.data(), targets_.data(), lse_.data(),
                            static_cast<T>(loss_scale / static_cast<T>(n)), dlogits_.data(), n, v);
  k::linear_backward_input(dlogits_.data(), store_.value(head_), dxf_.data(), n, d, v);
  k::linear_backward_weight(dlogits_.data(), xf_.data(), store_.grad(head_), n, d, v);
  k::rmsnorm_backward(dxf_.data(), residual_.back().data(), store_.value(final_norm_),
                      rstd_f_.data(), dstream_.data(), store_.grad(final_norm_), n, d);
  for (size_t l = blocks_.size(); l-- > 0;) {
    blocks_[l]->backward(dstream_.data(), residual_[l].data(), dstream_next_.data(), shape_,
                         loss_scale);
    std::swap(dstream_, dstream_next_);
  }
  k::embedding_backward(inputs_.data(), dstream_.data(), store_.grad(embedding_), n, d);
}

template <typename T>
double Model<T>::evaluate(const int32_t* inputs, const int32_t* targets, BatchShape shape) {
  // Expert load must only count training tokens: snapshot and restore the counters.
  std::vector<std::vector<int64_t>> saved_load;
  for (auto* moe : moe_layers()) saved_load.push_back(moe->load());
  const double loss = forward(inputs, targets, shape).loss;
  auto layers = moe_layers();
  for (size_t i = 0; i < layers.size(); ++i) layers[i]->restore_load(saved_load[i]);
  return loss;
}

template <typename T>
std::vector<MoeLayer<T>*> Model<T>::moe_layers() {
  std::vector<MoeLayer<T>*> layers;
  for (auto& b : blocks_) {
    if (auto* moe = b->moe()) layers.push_back(moe);
  }
  return layers;
}

template <typename T>
ParameterCounts Model<T>::count_parameters() const {
  ParameterCounts c;
  for (const auto& e : store_.entries()) {
    c.on_this_rank += e.size;
    if (e.placement == Placement::kReplicated) c.total += e.size;
    if (e.name == "embedding") c.embedding += e.size;
  }
  c.active = c.total;
  // Routed experts from the config: this rank may hold only some of them.
  const int64_t per_expert = 3 * config_.moe.intermediate * config_.hidden;  // w1, w3, w2
  const int64_t moe_layers = config_.layers - config_.dense_layers;
  c.total += moe_layers * config_.moe.routed_experts * per_expert;
  c.active += moe_layers * config_.moe.top_k * per_expert;
  return c;
}

template class Model<float>;
template class Model<double>;

}  // namespace baleine::model
