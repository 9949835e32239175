#pragma once
// The language model: embedding → blocks → RMSNorm → head → cross-entropy.
// Model<double> exists for gradient checks; training runs Model<float>.
//
// A rank may hold the whole model or only some pipeline stages of it (parts): the embedding
// comes with the first stage, the final norm, head and loss with the last. Every part runs
// forward and backward per micro-batch, with the state of each micro-batch in flight kept
// apart (by a micro-batch id), so a pipeline schedule can interleave them freely; a backward may
// be split into B (input gradients) and a later W (weight gradients, weight_grad_queue.h).
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "parallel/stage_assignment.h"
#include "trainer/config/config.h"
#include "trainer/model/activation_bytes.h"
#include "trainer/model/backend.h"
#include "trainer/model/block.h"
#include "trainer/model/linear.h"
#include "trainer/model/parameters.h"
#include "trainer/model/shapes.h"
#include "trainer/model/weight_grad_queue.h"

namespace baleine::model {

struct ForwardResult {
  double loss = 0;      // mean cross-entropy over the micro-batch's tokens (nats); 0 unless the
                        // part has the head
  double aux_loss = 0;  // Σ over the part's MoE layers of the sequence-wise balance loss
  double total() const { return loss + aux_loss; }
};

struct ParameterCounts {  // of the whole model, whatever this rank holds
  int64_t total = 0;
  int64_t active = 0;  // per token: routed experts count top_k / routed_experts of theirs
  int64_t embedding = 0;
  int64_t on_this_rank = 0;
};

// From the config alone (no allocation), for any layout.
ParameterCounts count_parameters(const config::ModelSection& config);

template <typename T>
class Model {
 public:
  // The whole model: one part holding every layer.
  Model(const config::ModelSection& config, uint64_t seed,
        const ModelParallelism& parallelism = {}, const PrecisionPlan& precision = {});
  // Only these pipeline stages (any order). Parameters are declared in model order whatever
  // the order of `stages`, so two ranks holding the same layers have identical layouts
  // (DualPipe's mirrored copies are summed as one buffer).
  // precision: the Linears' formats (linear.h); the default is FP32 (T) throughout.
  Model(const config::ModelSection& config, uint64_t seed, const ModelParallelism& parallelism,
        std::vector<parallel::StageLayers> stages, const PrecisionPlan& precision = {});

  // --- the whole model (requires a single part holding every layer) ---
  // inputs, targets: [shape.batch, shape.seq] token ids.
  ForwardResult forward(const int32_t* inputs, const int32_t* targets, BatchShape shape);
  // Backward of the last forward, scaled by loss_scale (1/accumulation steps): gradients of
  // loss_scale · (loss + aux_loss) are ADDED to the parameter gradients.
  void backward(T loss_scale);
  // Validation: the loss only, no state kept, expert load not counted.
  double evaluate(const int32_t* inputs, const int32_t* targets, BatchShape shape);

  // --- one part (pipeline stage) and one micro-batch at a time ---
  const std::vector<parallel::StageLayers>& parts() const { return parts_; }
  // Index into parts() of the stage numbered `stage`, or -1.
  int part_of_stage(int stage) const;
  // inputs: token ids, read when the part has the embedding; otherwise x_in, the previous
  // stage's output [tokens, hidden]. targets: read when the part has the head (the result's
  // loss); otherwise the part's output is written to x_out. State for (part, micro_batch) is
  // kept until its backward (or W) completes, or discard().
  ForwardResult forward_part(int part, int micro_batch, const int32_t* inputs,
                             const int32_t* targets, const T* x_in, T* x_out, BatchShape shape);
  // dx_out: gradient of the part's output (ignored with the head); dx_in: receives the gradient
  // of x_in (unused with the embedding). split: weight gradients wait for backward_weight_part.
  void backward_part(int part, int micro_batch, const T* dx_out, T* dx_in, T loss_scale,
                     bool split);
  void backward_weight_part(int part, int micro_batch);
  void discard(int part, int micro_batch);
  int in_flight() const { return static_cast<int>(in_flight_.size()); }
  // Whether forwards count expert load and activation bytes (off for validation).
  void set_counting(bool on);
  // What the counted forwards since the last call kept for their backward (summed over
  // micro-batches; activation_bytes.h), then zero again.
  ActivationBytes take_activation_bytes();

  ParameterStore<T>& parameters() { return store_; }
  const config::ModelSection& config() const { return config_; }
  std::vector<MoeLayer<T>*> moe_layers();       // of the layers held, in model order
  std::vector<int64_t> moe_layer_indices() const;  // their block indices
  ParameterCounts count_parameters() const;

 private:
  struct MicroBatch {  // everything one micro-batch's backward needs, for one part
    BatchShape shape;
    Array<int32_t> inputs, targets;
    std::vector<Array<T>> stream;  // stream[i]: input of the part's block i; last: output
    std::vector<typename TransformerBlock<T>::Saved> blocks;
    Array<T> xf, rstd_f, logits, lse;
    WeightGradQueue<T> weight_grads;
    bool awaiting_w = false;  // a split backward ran; its W has not
  };
  MicroBatch& start(int part, int micro_batch);
  MicroBatch& find(int part, int micro_batch);
  void release(int part, int micro_batch);
  void check_whole_model() const;

  Backend* backend_;  // current at construction; made current again for every call
  config::ModelSection config_;
  PrecisionPlan precision_;
  std::vector<parallel::StageLayers> parts_;
  ParameterStore<T> store_;
  typename ParameterStore<T>::Handle embedding_ = -1, final_norm_ = -1, head_ = -1;
  std::vector<std::unique_ptr<TransformerBlock<T>>> blocks_;  // [layer]; null if not held

  using InFlight = std::map<std::pair<int, int>, MicroBatch>;  // (part, micro-batch)
  InFlight in_flight_;
  bool counting_ = true;
  ActivationBytes activation_bytes_;
  // Released states, still in their map nodes: a new micro-batch reuses one, its buffers and
  // its node, so a warm step allocates nothing.
  std::vector<typename InFlight::node_type> spare_;
  Array<T> dlogits_, dxf_, dstream_, dstream_next_;  // backward temporaries
};

}  // namespace baleine::model
