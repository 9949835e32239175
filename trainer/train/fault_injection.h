#pragma once
// Test hooks for the fault-tolerance tests: BALEINE_FAULT_INJECT="rank=R,step=S,kind=K[,...]"
// arms world rank R at step S. Kinds:
//   exit                 in the middle of step S (after its first forward), exit at once without
//                        saying goodbye to MPI (status 7)
//   hang                 the same, but hang forever
//   nan[,count=N]        poison this rank's gradients with NaN in the first N steps run from
//                        step S on (default 1); counted as they run, so steps replayed after
//                        a rollback are clean once N were poisoned
//   sigterm              send itself SIGTERM in the middle of step S (as a preemption would)
//   kill_in_checkpoint,point=P
//                        SIGKILL itself at the P-th kill point (checkpoint_store.h) of the
//                        checkpoint saved after step S; with P beyond the last point it prints
//                        how many points there were
// Unset: no effect. A malformed value is reported and ignored.
#include <cstdint>
#include <string>

namespace baleine::train {

class FaultInjection {
 public:
  static FaultInjection from_environment(int rank);
  // Mid-step hook (exit, hang, sigterm).
  void maybe_fail(int64_t step) const;
  // Whether this rank's gradients are to be poisoned in `step` (counts the poisoned steps).
  bool poisons_gradients(int64_t step);
  // Arms the checkpoint kill points before the save after `step` (and disarms otherwise);
  // after_checkpoint reports the number of points when none was hit.
  void before_checkpoint(int64_t step) const;
  void after_checkpoint(int64_t step) const;

 private:
  bool armed_ = false;
  int64_t step_ = 0;
  int64_t count_ = 1;
  int64_t poisoned_ = 0;
  int64_t point_ = -1;
  std::string kind_;
};

}  // namespace baleine::train
