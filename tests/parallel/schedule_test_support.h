#pragma once
// Building schedule ops by hand in tests.
#include "parallel/schedule.h"

namespace baleine::parallel::schedule_testing {

// An op on stage `stage` of direction 0.
inline Op make_op(OpKind kind, int stage, int micro_batch, int peer = -1) {
  Op o;
  o.kind = kind;
  o.stage = StageRef{0, stage};
  o.micro_batch = micro_batch;
  o.peer = peer;
  return o;
}

}  // namespace baleine::parallel::schedule_testing
