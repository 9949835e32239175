#pragma once
// AdamW over a ParameterStore's flat buffers, with global-norm gradient clipping.
// Moments are FP32 here; BF16 moments come with the precision issue.
#include <cstdint>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/parameters.h"

namespace baleine::optim {

struct StepStats {
  double grad_norm = 0;   // global L2 norm before clipping
  double clip_scale = 1;  // factor applied to the gradients (1 = not clipped)
};

class AdamW {
 public:
  AdamW(const config::AdamWSection& hyper, double grad_clip,
        const model::ParameterStore<float>& params);
  // One update at learning rate lr; step is 1-based (bias correction).
  StepStats step(model::ParameterStore<float>& params, double lr, int64_t step);
  int64_t state_bytes() const;

  std::vector<float>& first_moment() { return m_; }
  std::vector<float>& second_moment() { return v_; }

 private:
  config::AdamWSection hyper_;
  double grad_clip_;
  std::vector<float> m_, v_;
};

// √(Σ g²) over all gradients, accumulated in double.
double global_grad_norm(const model::ParameterStore<float>& params);

}  // namespace baleine::optim
