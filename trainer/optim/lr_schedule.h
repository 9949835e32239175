#pragma once
// Learning rate at a step: linear warmup from peak/warmup_steps to peak over warmup_steps,
// then cosine decay from peak to min at the last step (or constant at peak).
#include <cstdint>

#include "trainer/config/config.h"

namespace baleine::optim {

// step is 1-based: step 1 is the first optimizer update.
double learning_rate(const config::LrSection& lr, int64_t step, int64_t total_steps);

}  // namespace baleine::optim
