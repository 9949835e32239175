#include "trainer/model/model.h"

#include "trainer/model/backend.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace baleine::model {

namespace {
constexpr int kWholeModelMicroBatch = 0;
constexpr int kEvaluationMicroBatch = -1;
}  // namespace

template <typename T>
Model<T>::Model(const config::ModelSection& c, uint64_t seed, const ModelParallelism& parallelism,
                const PrecisionPlan& precision)
    : Model(c, seed, parallelism, parallel::assign_layers(c.layers, 1), precision) {}

template <typename T>
Model<T>::Model(const config::ModelSection& c, uint64_t seed, const ModelParallelism& parallelism,
                std::vector<parallel::StageLayers> stages, const PrecisionPlan& precision)
    : backend_(&current_backend()), config_(c), precision_(precision), parts_(std::move(stages)) {
  ops<T>();  // a backend without a T path fails here, not at the first forward
  bool embedding = false, head = false;
  std::vector<bool> held(static_cast<size_t>(c.layers), false);
  for (const auto& p : parts_) {
    embedding |= p.has_embedding;
    head |= p.has_head;
    for (int64_t l = p.first_layer; l < p.first_layer + p.layers; ++l) {
      if (l < 0 || l >= c.layers || held[l]) {
        throw std::invalid_argument("Model: stage " + std::to_string(p.stage) + " holds block " +
                                    std::to_string(l) + ", out of range or held twice");
      }
      held[l] = true;
    }
  }
  if (embedding) {
    embedding_ = store_.declare("embedding", {c.vocab_size, c.hidden}, Init::kNormal, c.init_std,
                                false);
  }
  blocks_.resize(static_cast<size_t>(c.layers));
  for (int64_t l = 0; l < c.layers; ++l) {
    if (held[l]) {
      blocks_[l] = std::make_unique<TransformerBlock<T>>(store_, c, l, parallelism, precision);
    }
  }
  if (head) {
    final_norm_ = store_.declare("final_norm", {c.hidden}, Init::kOnes, 0, false);
    head_ = store_.declare("head", {c.vocab_size, c.hidden}, Init::kNormal, c.init_std, true);
  }
  store_.allocate(seed);
}

template <typename T>
int Model<T>::part_of_stage(int stage) const {
  for (size_t i = 0; i < parts_.size(); ++i) {
    if (parts_[i].stage == stage) return static_cast<int>(i);
  }
  return -1;
}

template <typename T>
typename Model<T>::MicroBatch& Model<T>::start(int part, int micro_batch) {
  if (part < 0 || part >= static_cast<int>(parts_.size())) {
    throw std::invalid_argument("Model: no part " + std::to_string(part));
  }
  const std::pair<int, int> key{part, micro_batch};
  if (in_flight_.count(key) != 0) {
    throw std::logic_error("Model: forward of part " + std::to_string(part) + " micro-batch " +
                           std::to_string(micro_batch) + " while its previous one is in flight");
  }
  if (spare_.empty()) return in_flight_.emplace(key, MicroBatch{}).first->second;
  typename InFlight::node_type node = std::move(spare_.back());
  spare_.pop_back();
  node.key() = key;
  return in_flight_.insert(std::move(node)).position->second;
}

template <typename T>
typename Model<T>::MicroBatch& Model<T>::find(int part, int micro_batch) {
  auto it = in_flight_.find({part, micro_batch});
  if (it == in_flight_.end()) {
    throw std::logic_error("Model: backward of part " + std::to_string(part) + " micro-batch " +
                           std::to_string(micro_batch) + " without its forward");
  }
  return it->second;
}

template <typename T>
void Model<T>::release(int part, int micro_batch) {
  auto it = in_flight_.find({part, micro_batch});
  if (it == in_flight_.end()) return;
  if (it->second.awaiting_w) {
    throw std::logic_error("Model: part " + std::to_string(part) + " micro-batch " +
                           std::to_string(micro_batch) + " released before its W ran");
  }
  spare_.push_back(in_flight_.extract(it));
}

template <typename T>
void Model<T>::discard(int part, int micro_batch) {
  auto it = in_flight_.find({part, micro_batch});
  if (it == in_flight_.end()) return;
  it->second.weight_grads.clear();  // a forward without backward has no W to run
  it->second.awaiting_w = false;
  release(part, micro_batch);
}

template <typename T>
ForwardResult Model<T>::forward_part(int part, int micro_batch, const int32_t* inputs,
                                     const int32_t* targets, const T* x_in, T* x_out,
                                     BatchShape shape) {
  const BackendScope scope(*backend_);
  const auto& p = parts_.at(static_cast<size_t>(part));
  const int64_t n = shape.tokens(), d = config_.hidden, v = config_.vocab_size;
  MicroBatch& mb = start(part, micro_batch);
  mb.shape = shape;
  mb.stream.resize(static_cast<size_t>(p.layers + 1));
  for (auto& s : mb.stream) s.resize(n * d);
  mb.blocks.resize(static_cast<size_t>(p.layers));

  if (p.has_embedding) {
    mb.inputs.assign_from_host(inputs, static_cast<size_t>(n));
    ops<T>().embedding_forward(mb.inputs.data(), store_.value(embedding_), mb.stream[0].data(), n,
                               d);
  } else {
    mb.stream[0].assign_from_host(x_in, static_cast<size_t>(n * d));
  }
  ForwardResult result;
  for (int64_t i = 0; i < p.layers; ++i) {
    auto& block = *blocks_[p.first_layer + i];
    block.swap_saved(mb.blocks[i]);  // this micro-batch's buffers in, whatever was there out
    block.forward(mb.stream[i].data(), mb.stream[i + 1].data(), shape);
    block.swap_saved(mb.blocks[i]);
    if (counting_) mb.blocks[i].add_bytes(activation_bytes_, d, block.moe() != nullptr);
    if (auto* moe = block.moe()) result.aux_loss += moe->aux_loss();
  }
  const T* out = mb.stream.back().data();
  if (!p.has_head) {
    backend_->memory->to_host(x_out, out, static_cast<size_t>(n * d) * sizeof(T));
    return result;
  }
  mb.targets.assign_from_host(targets, static_cast<size_t>(n));
  mb.xf.resize(n * d);
  mb.rstd_f.resize(n);
  mb.logits.resize(n * v);
  mb.lse.resize(n);
  ops<T>().rmsnorm_forward(out, store_.value(final_norm_), mb.xf.data(), mb.rstd_f.data(), n, d,
                           static_cast<T>(config_.norm_eps));
  ops<T>().linear_forward(mb.xf.data(), store_.value(head_), mb.logits.data(), n, d, v);
  result.loss =
      ops<T>().cross_entropy_forward(mb.logits.data(), mb.targets.data(), mb.lse.data(), n, v);
  return result;
}

template <typename T>
void Model<T>::backward_part(int part, int micro_batch, const T* dx_out, T* dx_in, T loss_scale,
                             bool split) {
  const BackendScope scope(*backend_);
  const auto& p = parts_.at(static_cast<size_t>(part));
  MicroBatch& mb = find(part, micro_batch);
  WeightGradQueue<T>* queue = split ? &mb.weight_grads : nullptr;
  const int64_t n = mb.shape.tokens(), d = config_.hidden, v = config_.vocab_size;
  dstream_.resize(n * d);
  dstream_next_.resize(n * d);

  if (p.has_head) {
    dlogits_.resize(n * v);
    dxf_.resize(n * d);
    ops<T>().cross_entropy_backward(mb.logits.data(), mb.targets.data(), mb.lse.data(),
                                    static_cast<T>(loss_scale / static_cast<T>(n)), dlogits_.data(),
                                    n, v);
    ops<T>().linear_backward_input(dlogits_.data(), store_.value(head_), dxf_.data(), n, d, v);
    const T* dlogits = kept_for_weight_grad(queue, dlogits_.data(), n * v);
    weight_grad(queue, [=, xf = mb.xf.data()] {
      ops<T>().linear_backward_weight(dlogits, xf, store_.grad(head_), n, d, v);
    });
    ops<T>().rmsnorm_backward(dxf_.data(), mb.stream.back().data(), store_.value(final_norm_),
                              mb.rstd_f.data(), dstream_.data(), store_.grad(final_norm_), n, d);
  } else {
    dstream_.assign_from_host(dx_out, static_cast<size_t>(n * d));
  }
  for (int64_t i = p.layers; i-- > 0;) {
    auto& block = *blocks_[p.first_layer + i];
    block.swap_saved(mb.blocks[i]);
    block.backward(dstream_.data(), mb.stream[i].data(), dstream_next_.data(), mb.shape,
                   loss_scale, queue);
    block.swap_saved(mb.blocks[i]);
    std::swap(dstream_, dstream_next_);
  }
  if (p.has_embedding) {
    // The embedding's backward is all weight gradient: a scatter-add of the stream gradient.
    const T* dstream = kept_for_weight_grad(queue, dstream_.data(), n * d);
    weight_grad(queue, [=, ids = mb.inputs.data()] {
      ops<T>().embedding_backward(ids, dstream, store_.grad(embedding_), n, d);
    });
  } else {
    backend_->memory->to_host(dx_in, dstream_.data(), static_cast<size_t>(n * d) * sizeof(T));
  }
  if (split) mb.awaiting_w = true;
  else release(part, micro_batch);
}

template <typename T>
void Model<T>::backward_weight_part(int part, int micro_batch) {
  const BackendScope scope(*backend_);
  MicroBatch& mb = find(part, micro_batch);
  if (!mb.awaiting_w) {
    throw std::logic_error("Model: W of part " + std::to_string(part) + " micro-batch " +
                           std::to_string(micro_batch) + " before its split backward");
  }
  mb.weight_grads.run();
  mb.awaiting_w = false;
  release(part, micro_batch);
}

template <typename T>
void Model<T>::check_whole_model() const {
  if (parts_.size() != 1 || !parts_[0].has_embedding || !parts_[0].has_head ||
      parts_[0].layers != config_.layers) {
    throw std::logic_error("Model: the whole-model API needs one part holding every layer");
  }
}

template <typename T>
ForwardResult Model<T>::forward(const int32_t* inputs, const int32_t* targets, BatchShape shape) {
  check_whole_model();
  discard(0, kWholeModelMicroBatch);  // a forward without a backward (a loss probe) is allowed
  return forward_part(0, kWholeModelMicroBatch, inputs, targets, nullptr, nullptr, shape);
}

template <typename T>
void Model<T>::backward(T loss_scale) {
  backward_part(0, kWholeModelMicroBatch, nullptr, nullptr, loss_scale, false);
}

template <typename T>
double Model<T>::evaluate(const int32_t* inputs, const int32_t* targets, BatchShape shape) {
  check_whole_model();
  set_counting(false);  // expert load must only count training tokens
  const double loss =
      forward_part(0, kEvaluationMicroBatch, inputs, targets, nullptr, nullptr, shape).loss;
  discard(0, kEvaluationMicroBatch);
  set_counting(true);
  return loss;
}

template <typename T>
void Model<T>::set_counting(bool on) {
  counting_ = on;
  for (auto* moe : moe_layers()) moe->set_counting(on);
}

template <typename T>
ActivationBytes Model<T>::take_activation_bytes() {
  const ActivationBytes bytes = activation_bytes_;
  activation_bytes_ = {};
  return bytes;
}

template <typename T>
std::vector<MoeLayer<T>*> Model<T>::moe_layers() {
  std::vector<MoeLayer<T>*> layers;
  for (auto& b : blocks_) {
    if (b && b->moe()) layers.push_back(b->moe());
  }
  return layers;
}

template <typename T>
std::vector<int64_t> Model<T>::moe_layer_indices() const {
  std::vector<int64_t> indices;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    if (blocks_[l] && blocks_[l]->moe()) indices.push_back(static_cast<int64_t>(l));
  }
  return indices;
}

ParameterCounts count_parameters(const config::ModelSection& c) {
  const int64_t d = c.hidden, moe_layers = c.layers - c.dense_layers;
  const int64_t per_expert = 3 * c.moe.intermediate * d;  // w1, w3, w2
  const int64_t block_common = 2 * d + 4 * d * d;         // norms, attention
  const int64_t dense_block = block_common + 3 * d * c.intermediate;
  const int64_t moe_block_replicated =
      block_common + c.moe.routed_experts * d + c.moe.shared_experts * per_expert;  // + gate
  ParameterCounts counts;
  counts.embedding = c.vocab_size * d;
  const int64_t replicated = counts.embedding + c.dense_layers * dense_block +
                             moe_layers * moe_block_replicated + d + c.vocab_size * d;
  counts.total = replicated + moe_layers * c.moe.routed_experts * per_expert;
  counts.active = replicated + moe_layers * c.moe.top_k * per_expert;
  return counts;
}

template <typename T>
ParameterCounts Model<T>::count_parameters() const {
  ParameterCounts c = model::count_parameters(config_);
  c.on_this_rank = store_.total();
  return c;
}

template class Model<float>;
template class Model<double>;

}  // namespace baleine::model
