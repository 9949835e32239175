// SegmentClock: every second since `start` lands in exactly one segment, and move() only
// re-attributes time, never creates or destroys it.
#include "trainer/cost/segment_clock.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <thread>

namespace baleine::cost {
namespace {

using Clock = SegmentClock::Clock;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST(Segments, KeysAndLabelsRoundTripAndAreDistinct) {
  std::set<std::string> keys, labels;
  for (size_t i = 0; i < kSegmentCount; ++i) {
    const auto segment = static_cast<Segment>(i);
    keys.insert(segment_key(segment));
    labels.insert(segment_label(segment));
    Segment back = Segment::kIdle;
    ASSERT_TRUE(segment_from_key(segment_key(segment), &back)) << segment_key(segment);
    EXPECT_EQ(back, segment);
  }
  EXPECT_EQ(keys.size(), kSegmentCount);
  EXPECT_EQ(labels.size(), kSegmentCount);
  // The ledger's format: these keys are what old ledgers hold, so they must never change.
  EXPECT_STREQ(segment_key(Segment::kCommunication), "exposed_communication");
  EXPECT_STREQ(segment_key(Segment::kBubble), "pipeline_bubble");
  EXPECT_STREQ(segment_key(Segment::kCheckpoint), "checkpoint_io");
  EXPECT_STREQ(segment_key(Segment::kLostWork), "lost_work");
  Segment untouched = Segment::kCompute;
  EXPECT_FALSE(segment_from_key("communication", &untouched));
  EXPECT_EQ(untouched, Segment::kCompute);
}

TEST(SegmentClock, TotalsSumToWallTimeAndFollowTheSwitches) {
  // A start 80 ms in the past, as the trainer passes its process start: that time is startup.
  const Clock::time_point start = Clock::now() - std::chrono::milliseconds(80);
  SegmentClock clock(start);
  EXPECT_EQ(clock.running(), Segment::kStartup);
  clock.switch_to(Segment::kCompute);
  sleep_ms(30);
  clock.switch_to(Segment::kCommunication);
  sleep_ms(10);
  clock.switch_to(Segment::kCompute);
  sleep_ms(20);
  clock.switch_to(Segment::kIdle);
  EXPECT_EQ(clock.running(), Segment::kIdle);

  const SegmentSeconds totals = clock.totals();
  const double wall = clock.wall_s();
  // totals() and wall_s() read the clock a few microseconds apart; 1 ms is the stated bound.
  EXPECT_NEAR(total_seconds(totals), wall, 1e-3);
  // sleep_for sleeps at least as long as asked, so these are lower bounds.
  EXPECT_GE(totals[static_cast<size_t>(Segment::kStartup)], 0.080);
  EXPECT_GE(totals[static_cast<size_t>(Segment::kCompute)], 0.050);
  EXPECT_GE(totals[static_cast<size_t>(Segment::kCommunication)], 0.010);
  EXPECT_EQ(totals[static_cast<size_t>(Segment::kBubble)], 0.0);
  EXPECT_EQ(totals[static_cast<size_t>(Segment::kLostWork)], 0.0);

  // The running segment keeps growing between reads, and the sum keeps matching.
  sleep_ms(15);
  const SegmentSeconds later = clock.totals();
  EXPECT_GE(later[static_cast<size_t>(Segment::kIdle)],
            totals[static_cast<size_t>(Segment::kIdle)] + 0.015);
  EXPECT_NEAR(total_seconds(later), clock.wall_s(), 1e-3);
}

TEST(SegmentClock, MoveReattributesAndClampsToWhatTheSourceHolds) {
  // 10 s of startup, then compute starts: startup holds ~10 s, idle nothing.
  SegmentClock clock(Clock::now() - std::chrono::seconds(10));
  clock.switch_to(Segment::kCompute);
  const double startup = clock.totals()[static_cast<size_t>(Segment::kStartup)];
  ASSERT_GE(startup, 10.0);

  clock.move(Segment::kStartup, Segment::kIdle, 3.0);
  SegmentSeconds t = clock.totals();
  EXPECT_EQ(t[static_cast<size_t>(Segment::kIdle)], 3.0);
  EXPECT_DOUBLE_EQ(t[static_cast<size_t>(Segment::kStartup)], startup - 3.0);

  // Asking for 5 s from idle, which holds 3 s, moves exactly 3 s and leaves idle at 0.
  clock.move(Segment::kIdle, Segment::kBubble, 5.0);
  t = clock.totals();
  EXPECT_EQ(t[static_cast<size_t>(Segment::kIdle)], 0.0);
  EXPECT_EQ(t[static_cast<size_t>(Segment::kBubble)], 3.0);

  // Negative and NaN amounts move nothing.
  clock.move(Segment::kBubble, Segment::kEvaluation, -1.0);
  clock.move(Segment::kBubble, Segment::kEvaluation, std::numeric_limits<double>::quiet_NaN());
  t = clock.totals();
  EXPECT_EQ(t[static_cast<size_t>(Segment::kBubble)], 3.0);
  EXPECT_EQ(t[static_cast<size_t>(Segment::kEvaluation)], 0.0);
  for (double v : t) EXPECT_GE(v, 0.0);
  EXPECT_NEAR(total_seconds(t), clock.wall_s(), 1e-3);
}

TEST(SegmentClock, MoveFromTheRunningSegmentIncludesItsTimeSoFar) {
  SegmentClock clock(Clock::now(), Segment::kCompute);
  sleep_ms(40);
  // Collective time measured inside the compute phase that is still running.
  clock.move(Segment::kCompute, Segment::kCommunication, 0.030);
  EXPECT_EQ(clock.running(), Segment::kCompute);
  SegmentSeconds t = clock.totals();
  EXPECT_EQ(t[static_cast<size_t>(Segment::kCommunication)], 0.030);
  EXPECT_GE(t[static_cast<size_t>(Segment::kCompute)], 0.010);
  // More than compute holds: everything it had moves, nothing more.
  clock.move(Segment::kCompute, Segment::kCommunication, 1e6);
  t = clock.totals();
  EXPECT_LT(t[static_cast<size_t>(Segment::kCompute)], 0.010);  // only what ran since the move
  EXPECT_GE(t[static_cast<size_t>(Segment::kCommunication)], 0.040);
  EXPECT_LT(t[static_cast<size_t>(Segment::kCommunication)], 1.0);
  EXPECT_NEAR(total_seconds(t), clock.wall_s(), 1e-3);
}

}  // namespace
}  // namespace baleine::cost
