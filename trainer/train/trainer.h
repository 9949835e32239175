#pragma once
// The training loop: config → data → model → AdamW, one optimizer step at a time, with the
// progress line, metrics.jsonl and periodic validation.
#include <cstdint>
#include <iosfwd>

#include "parallel/runtime.h"
#include "trainer/config/config.h"

namespace baleine::train {

struct TrainSummary {
  int64_t steps = 0;
  int64_t tokens = 0;
  double first_loss = 0;
  double last_loss = 0;
  bool has_val_loss = false;
  double last_val_loss = 0;
  double seconds = 0;
};

// Throws UserError for bad input discovered while setting up (data, run dir).
TrainSummary train(const config::RunConfig& config, const parallel::ProcessInfo& process,
                   std::ostream& out);

}  // namespace baleine::train
