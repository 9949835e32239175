#include "trainer/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace baleine::optim {

double learning_rate(const config::LrSection& lr, int64_t step, int64_t total_steps) {
  if (lr.warmup_steps > 0 && step <= lr.warmup_steps) {
    return lr.peak * static_cast<double>(step) / static_cast<double>(lr.warmup_steps);
  }
  if (lr.schedule == "constant") return lr.peak;
  const int64_t decay_steps = total_steps - lr.warmup_steps;
  if (decay_steps <= 0) return lr.peak;
  const double progress = std::clamp(
      static_cast<double>(step - lr.warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  const double pi = 3.14159265358979323846;
  return lr.min + 0.5 * (lr.peak - lr.min) * (1.0 + std::cos(pi * progress));
}

}  // namespace baleine::optim
