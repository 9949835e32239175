#include "trainer/train/stage_work.h"

#include <stdexcept>
#include <string>

namespace baleine::train {

ModelStageWork::ModelStageWork(model::Model<float>& model, model::BatchShape shape)
    : model_(model), shape_(shape) {
  inputs_.resize(static_cast<size_t>(shape.tokens()));
  targets_.resize(static_cast<size_t>(shape.tokens()));
}

void ModelStageWork::begin_training(BatchSource source, float loss_scale) {
  source_ = std::move(source);
  training_ = true;
  loss_scale_ = loss_scale;
  loss_sum_ = aux_loss_sum_ = 0;
  micro_batch_losses_.clear();
  model_.set_counting(true);
}

void ModelStageWork::begin_evaluation(BatchSource source) {
  source_ = std::move(source);
  training_ = false;
  loss_sum_ = aux_loss_sum_ = 0;
  micro_batch_losses_.clear();
  model_.set_counting(false);
}

int64_t ModelStageWork::boundary_elements() const {
  return shape_.tokens() * model_.config().hidden;
}

int ModelStageWork::part(const parallel::StageRef& stage) const {
  // DualPipe's two directions run the same model stages: stage s is stage s either way.
  const int p = model_.part_of_stage(stage.stage);
  if (p < 0) {
    throw std::logic_error("pipeline: this rank holds no part for stage " +
                           std::to_string(stage.stage));
  }
  return p;
}

void ModelStageWork::forward(const parallel::StageRef& stage, int micro_batch, const float* input,
                             float* output) {
  const int p = part(stage);
  const auto& layers = model_.parts()[static_cast<size_t>(p)];
  if (layers.has_embedding || layers.has_head) source_(micro_batch, inputs_.data(), targets_.data());
  const auto result = model_.forward_part(p, micro_batch, inputs_.data(), targets_.data(), input,
                                          output, shape_);
  loss_sum_ += result.loss;
  aux_loss_sum_ += result.aux_loss;
  if (layers.has_head) {
    if (micro_batch_losses_.size() <= static_cast<size_t>(micro_batch)) {
      micro_batch_losses_.resize(static_cast<size_t>(micro_batch) + 1, 0.0);
    }
    micro_batch_losses_[static_cast<size_t>(micro_batch)] = result.loss;
  }
  if (!training_) {
    model_.discard(p, micro_batch);
  } else if (micro_batch == 0 && first_forward_hook_) {
    first_forward_hook_();
  }
}

void ModelStageWork::backward(const parallel::StageRef& stage, int micro_batch,
                              const float* grad_output, float* grad_input, bool split) {
  model_.backward_part(part(stage), micro_batch, grad_output, grad_input, loss_scale_, split);
}

void ModelStageWork::backward_weight(const parallel::StageRef& stage, int micro_batch) {
  model_.backward_weight_part(part(stage), micro_batch);
}

}  // namespace baleine::train
