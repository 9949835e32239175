#pragma once
// Schedule generators, one per ScheduleKind; make_schedule() (schedule.cpp) dispatches to them.
// Each validates its shape and throws std::invalid_argument with the arithmetic when the shape
// is impossible. Placement and op meanings are documented in schedule.h.
#include "parallel/schedule.h"

namespace baleine::parallel {

// 1F1B / ZB1P: rank r holds stage r of `ranks` stages (parallel/schedule.cpp).
Schedule make_1f1b(int ranks, int micro_batches);
Schedule make_zb1p(int ranks, int micro_batches);

// parallel/schedule_dualpipe.cpp. DualPipe: even `ranks`, two directions, each rank holds
// two stages; DualPipeV: `ranks` ranks hold 2·ranks stages in a V.
Schedule make_dualpipe(int ranks, int micro_batches);
Schedule make_dualpipev(int ranks, int micro_batches);

}  // namespace baleine::parallel
