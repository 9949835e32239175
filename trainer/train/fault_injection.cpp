#include "trainer/train/fault_injection.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace baleine::train {

FaultInjection FaultInjection::from_environment(int rank) {
  FaultInjection f;
  const char* spec = std::getenv("BALEINE_FAULT_INJECT");
  if (!spec) return f;
  int target_rank = -1;
  long long step = 0;
  char kind[16] = {0};
  if (std::sscanf(spec, "rank=%d,step=%lld,kind=%15s", &target_rank, &step, kind) != 3) {
    std::fprintf(stderr, "warning: ignoring malformed BALEINE_FAULT_INJECT='%s' "
                         "(expected rank=R,step=S,kind=exit|hang)\n", spec);
    return f;
  }
  f.armed_ = target_rank == rank;
  f.step_ = step;
  f.hang_ = std::string(kind) == "hang";
  return f;
}

void FaultInjection::maybe_fail(int64_t step) const {
  if (!armed_ || step != step_) return;
  std::fprintf(stderr, "fault injection: %s at step %lld\n", hang_ ? "hanging" : "exiting",
               static_cast<long long>(step));
  std::fflush(stderr);
  if (!hang_) std::_Exit(7);
  for (;;) pause();
}

}  // namespace baleine::train
