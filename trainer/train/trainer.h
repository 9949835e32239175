#pragma once
// The training loop: config → data → model → AdamW, one optimizer step at a time, with the
// progress line, metrics.jsonl and periodic validation; on one process or on many (data and
// expert parallelism, ZeRO-1), where every rank runs this same function.
#include <cstdint>
#include <iosfwd>
#include <string>

#include "parallel/process_groups.h"
#include "trainer/config/config.h"
#include "trainer/model/backend.h"
#include "trainer/train/progress.h"

namespace baleine::train {

struct TrainOptions {
  std::string save_params_dir;  // --save-params: every rank writes its parameters at the end
  std::string resume_from;      // --resume-from: this checkpoint, not the run dir's newest
  // Tests: train on this backend instead of the one `device:` names (a stand-in device memory
  // runs the device code paths without a GPU).
  model::Backend* backend = nullptr;
};

struct TrainSummary {
  int64_t steps = 0;
  int64_t tokens = 0;
  double first_loss = 0;
  double last_loss = 0;
  bool has_val_loss = false;
  double last_val_loss = 0;
  double seconds = 0;
  StepRecord first_step_bytes;  // step 1's record (its activation and wire bytes)
  int64_t resumed_from_step = -1;  // the checkpoint's step when the run resumed, else -1
  // 0, kExitStopped (a stop signal was honoured) or kExitDiverged (the numerical guard gave up).
  int exit_status = 0;
};

// Resumes from the run dir's newest complete checkpoint (or options.resume_from) when there is
// one; saves checkpoints every checkpoint.every steps, at the end, and on a stop signal.
// Throws UserError for bad input discovered while setting up (data, run dir, checkpoints). Only `out` of
// rank 0 should be a terminal; the other ranks' output is discarded by the caller.
TrainSummary train(const config::RunConfig& config, parallel::ProcessGroups& groups,
                   const TrainOptions& options, std::ostream& out);

}  // namespace baleine::train
