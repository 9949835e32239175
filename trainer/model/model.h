#pragma once
// The language model: embedding → blocks → RMSNorm → head → cross-entropy.
// Model<double> exists for gradient checks; training runs Model<float>.
#include <cstdint>
#include <memory>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/block.h"
#include "trainer/model/parameters.h"
#include "trainer/model/shapes.h"

namespace baleine::model {

struct ForwardResult {
  double loss = 0;      // mean cross-entropy over the micro-batch's tokens (nats)
  double aux_loss = 0;  // Σ over MoE layers of the sequence-wise balance loss
  double total() const { return loss + aux_loss; }
};

struct ParameterCounts {  // of the whole model, whatever this rank holds
  int64_t total = 0;
  int64_t active = 0;  // per token: routed experts count top_k / routed_experts of theirs
  int64_t embedding = 0;
  int64_t on_this_rank = 0;
};

template <typename T>
class Model {
 public:
  Model(const config::ModelSection& config, uint64_t seed,
        const ModelParallelism& parallelism = {});

  // inputs, targets: [shape.batch, shape.seq] token ids.
  ForwardResult forward(const int32_t* inputs, const int32_t* targets, BatchShape shape);
  // Backward of the last forward, scaled by loss_scale (1/accumulation steps): gradients of
  // loss_scale · (loss + aux_loss) are ADDED to the parameter gradients.
  void backward(T loss_scale);
  // Validation: the loss only, no state kept for a backward.
  double evaluate(const int32_t* inputs, const int32_t* targets, BatchShape shape);

  ParameterStore<T>& parameters() { return store_; }
  const config::ModelSection& config() const { return config_; }
  std::vector<MoeLayer<T>*> moe_layers();
  ParameterCounts count_parameters() const;

 private:
  config::ModelSection config_;
  ParameterStore<T> store_;
  typename ParameterStore<T>::Handle embedding_, final_norm_, head_;
  std::vector<std::unique_ptr<TransformerBlock<T>>> blocks_;

  BatchShape shape_;
  std::vector<int32_t> inputs_, targets_;
  std::vector<std::vector<T>> residual_;   // residual_[l]: input of block l; [L] = final stream
  std::vector<T> xf_, rstd_f_, logits_, lse_;
  std::vector<T> dlogits_, dxf_, dstream_, dstream_next_;
};

}  // namespace baleine::model
