#pragma once
// A test hook for the fault-tolerance tests: BALEINE_FAULT_INJECT="rank=R,step=S,kind=K" makes
// world rank R, in the middle of step S (after its first forward), either exit at once without
// saying goodbye to MPI (kind=exit, status 7) or hang forever (kind=hang). Unset: no effect.
#include <cstdint>

namespace baleine::train {

class FaultInjection {
 public:
  static FaultInjection from_environment(int rank);
  void maybe_fail(int64_t step) const;

 private:
  bool armed_ = false;
  int64_t step_ = 0;
  bool hang_ = false;
};

}  // namespace baleine::train
