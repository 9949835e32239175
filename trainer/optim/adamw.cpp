#include "trainer/optim/adamw.h"

#include <cmath>

#include "kernels/adamw.h"

namespace baleine::optim {

AdamW::AdamW(const config::AdamWSection& hyper, double grad_clip,
             const model::ParameterStore<float>& params)
    : hyper_(hyper), grad_clip_(grad_clip) {
  m_.assign(params.values().size(), 0.0f);
  v_.assign(params.values().size(), 0.0f);
}

double global_grad_norm(const model::ParameterStore<float>& params) {
  return std::sqrt(kernels::sum_of_squares(params.grads().data(),
                                           static_cast<int64_t>(params.grads().size())));
}

StepStats AdamW::step(model::ParameterStore<float>& params, double lr, int64_t step) {
  StepStats stats;
  stats.grad_norm = global_grad_norm(params);
  if (grad_clip_ > 0 && stats.grad_norm > grad_clip_) stats.clip_scale = grad_clip_ / stats.grad_norm;

  kernels::AdamWStep s;
  s.lr = static_cast<float>(lr);
  s.beta1 = static_cast<float>(hyper_.beta1);
  s.beta2 = static_cast<float>(hyper_.beta2);
  s.eps = static_cast<float>(hyper_.eps);
  s.step = step;
  s.grad_scale = static_cast<float>(stats.clip_scale);
  for (const auto& e : params.entries()) {
    s.weight_decay = e.weight_decay ? static_cast<float>(hyper_.weight_decay) : 0.0f;
    kernels::adamw_update(params.values().data() + e.offset, params.grads().data() + e.offset,
                          m_.data() + e.offset, v_.data() + e.offset, e.size, s);
  }
  return stats;
}

int64_t AdamW::state_bytes() const {
  return static_cast<int64_t>((m_.size() + v_.size()) * sizeof(float));
}

}  // namespace baleine::optim
