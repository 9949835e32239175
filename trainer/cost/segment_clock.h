#pragma once
// One rank's stopwatch over the ledger's segments: time since the last switch goes to the
// segment that was running, so the segments always add up to the wall time since `start`.
#include <chrono>

#include "trainer/cost/segments.h"

namespace baleine::cost {

class SegmentClock {
 public:
  using Clock = std::chrono::steady_clock;
  explicit SegmentClock(Clock::time_point start, Segment first = Segment::kStartup);

  // Ends the running segment now and starts `next`.
  void switch_to(Segment next);
  Segment running() const { return running_; }
  // Re-attributes up to `seconds` already counted in `from` to `to` (e.g. the collective time
  // measured inside a compute phase); clamped to what `from` holds.
  void move(Segment from, Segment to, double seconds);
  // The totals including the running segment up to now; they sum to wall_s().
  SegmentSeconds totals() const;
  double wall_s() const;

 private:
  Clock::time_point start_;
  Clock::time_point since_;
  Segment running_;
  SegmentSeconds done_{};
};

}  // namespace baleine::cost
