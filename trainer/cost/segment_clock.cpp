#include "trainer/cost/segment_clock.h"

#include <algorithm>
#include <cmath>

namespace baleine::cost {

namespace {
double seconds_between(SegmentClock::Clock::time_point from, SegmentClock::Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}
}  // namespace

SegmentClock::SegmentClock(Clock::time_point start, Segment first)
    : start_(start), since_(start), running_(first) {}

void SegmentClock::switch_to(Segment next) {
  const Clock::time_point now = Clock::now();
  done_[static_cast<size_t>(running_)] += seconds_between(since_, now);
  since_ = now;
  running_ = next;
}

void SegmentClock::move(Segment from, Segment to, double seconds) {
  // Close the running segment first, so that time spent in it so far can be moved too (the
  // usual case: collective time measured inside the compute phase that is still running).
  switch_to(running_);
  double& source = done_[static_cast<size_t>(from)];
  // Never move more than `from` holds, nor a negative or NaN amount: either would break the
  // invariant that every segment is >= 0 and they sum to the wall time.
  const double amount = std::isnan(seconds) ? 0.0 : std::clamp(seconds, 0.0, source);
  source -= amount;
  done_[static_cast<size_t>(to)] += amount;
}

SegmentSeconds SegmentClock::totals() const {
  SegmentSeconds totals = done_;
  totals[static_cast<size_t>(running_)] += seconds_between(since_, Clock::now());
  return totals;
}

double SegmentClock::wall_s() const { return seconds_between(start_, Clock::now()); }

}  // namespace baleine::cost
