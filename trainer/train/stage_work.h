#pragma once
// The model side of the pipeline executor (parallel/pipeline_executor.h) for training and
// validation: maps a schedule's stages onto this rank's model parts, fetches each micro-batch's
// tokens from the sampler when its part needs them (the embedding's stage reads inputs, the
// head's stage targets), and adds up the losses this rank computes. Without pipeline
// parallelism the "schedule" is one rank running F, B per micro-batch: the same code path.
#include <cstdint>
#include <functional>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "trainer/model/model.h"

namespace baleine::train {

class ModelStageWork final : public parallel::StageWork {
 public:
  // Fills micro-batch `micro_batch`'s inputs and targets ([micro_batch rows, seq]).
  using BatchSource = std::function<void(int micro_batch, int32_t* inputs, int32_t* targets)>;

  ModelStageWork(model::Model<float>& model, model::BatchShape shape);

  // Training: backward scaled by loss_scale (1 / micro-batches per step). Evaluation: forward
  // only, nothing kept, expert load not counted. Both reset the loss sums.
  void begin_training(BatchSource source, float loss_scale);
  void begin_evaluation(BatchSource source);
  // Called after the first forward of micro-batch 0 in training (the fault-injection hook).
  void on_first_forward(std::function<void()> hook) { first_forward_hook_ = std::move(hook); }

  // Σ over the micro-batches this rank ran of the cross-entropy (head stages) and of the
  // balance loss (MoE layers of its stages).
  double loss_sum() const { return loss_sum_; }
  double aux_loss_sum() const { return aux_loss_sum_; }
  // The cross-entropy of each micro-batch whose head ran on this rank, by micro-batch index
  // (0 for the others), so the step's loss can be summed in one order on every layout.
  const std::vector<double>& micro_batch_losses() const { return micro_batch_losses_; }

  int64_t boundary_elements() const override;
  void forward(const parallel::StageRef& stage, int micro_batch, const float* input,
               float* output) override;
  void backward(const parallel::StageRef& stage, int micro_batch, const float* grad_output,
                float* grad_input, bool split) override;
  void backward_weight(const parallel::StageRef& stage, int micro_batch) override;

 private:
  int part(const parallel::StageRef& stage) const;

  model::Model<float>& model_;
  model::BatchShape shape_;
  BatchSource source_;
  bool training_ = true;
  float loss_scale_ = 1;
  double loss_sum_ = 0, aux_loss_sum_ = 0;
  std::vector<double> micro_batch_losses_;
  std::function<void()> first_forward_hook_;
  std::vector<int32_t> inputs_, targets_;
};

}  // namespace baleine::train
