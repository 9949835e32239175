#pragma once
// The numerical guard: before a step's update is applied, its loss and global gradient norm are
// checked. A non-finite value, or a loss spike (more than guard.z_score standard deviations
// above the mean of the last guard.window applied steps), skips the update; after
// guard.max_skips skips in a row the run rolls back to its last checkpoint (at most
// guard.max_rollbacks times), else stops. The inputs are the same on every rank (the loss and
// the norm are all-reduced), so every rank reaches the same verdict without communicating.
// PaLM (Chowdhery et al. 2022, §5.1) handled its spikes the same way by hand: restart from a
// checkpoint before the spike and skip the batches that led to it.
#include <cstdint>
#include <deque>
#include <string>

#include "trainer/checkpoint/checkpoint_format.h"
#include "trainer/config/config.h"

namespace baleine::train {

struct GuardVerdict {
  enum class Action { kApply, kSkip, kRollback, kStop };
  Action action = Action::kApply;
  std::string reason;  // why the step is not applied ("loss is nan", "loss 9.1 is 7.2 std ...")
};

class NumericalGuard {
 public:
  explicit NumericalGuard(const config::GuardSection& config);
  // Judges one step and remembers it (an applied step's loss joins the window).
  GuardVerdict check(double loss, double grad_norm);
  // After the trainer rolled back to a checkpoint: the skip streak ends, a rollback is counted.
  void rolled_back();

  ckpt::GuardState state() const;
  void restore(const ckpt::GuardState& state);
  int64_t total_skips() const { return total_skips_; }

 private:
  config::GuardSection config_;
  std::deque<double> recent_;
  int64_t consecutive_skips_ = 0, total_skips_ = 0, rollbacks_ = 0;
};

}  // namespace baleine::train
