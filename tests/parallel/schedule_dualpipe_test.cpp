// DualPipe and DualPipeV op lists, checked as data for many shapes: every (stage, micro-batch)
// gets one forward and one backward (B, BI with a later W, or half of an F&B) on the rank that
// holds the stage; every send has exactly one matching receive; the lists run to completion
// when simulated; placement is the published one; impossible shapes throw with the arithmetic;
// simulated bubbles and peak activations match the DualPipe README's table.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/schedule_generators.h"

namespace baleine::parallel {
namespace {

using Key = std::tuple<int, int, int>;  // direction, stage, micro-batch
Key key(StageRef s, int m) { return {s.direction, s.stage, m}; }

std::string where(const Schedule& s) {
  return std::string(s.kind == ScheduleKind::kDualPipe ? "dualpipe" : "dualpipev") +
         " ranks " + std::to_string(s.ranks) + " micro-batches " + std::to_string(s.micro_batches);
}

// The micro-batches that flow through direction d.
std::vector<int> micro_batches_of(const Schedule& s, int d) {
  std::vector<int> out;
  const int per_direction = s.micro_batches / s.directions;
  for (int k = 0; k < per_direction; ++k) out.push_back(d * per_direction + k);
  return out;
}

int holder(const Schedule& s, StageRef st) {
  for (int r = 0; r < s.ranks; ++r)
    for (const StageRef& held : s.stages_of_rank[r])
      if (held == st) return r;
  return -1;
}

bool is_transfer(OpKind k) {
  return k == OpKind::kSendActivation || k == OpKind::kRecvActivation ||
         k == OpKind::kSendGradient || k == OpKind::kRecvGradient;
}

void expect_placement(const Schedule& s) {
  ASSERT_EQ(static_cast<int>(s.stages_of_rank.size()), s.ranks);
  ASSERT_EQ(static_cast<int>(s.ops.size()), s.ranks);
  std::set<Key> held;
  for (int r = 0; r < s.ranks; ++r) {
    const auto& st = s.stages_of_rank[r];
    ASSERT_EQ(st.size(), 2u) << "rank " << r << ": 2 stages' parameters on every rank";
    if (s.kind == ScheduleKind::kDualPipe) {
      EXPECT_TRUE((st[0] == StageRef{0, r} && st[1] == StageRef{1, s.ranks - 1 - r}) ||
                  (st[1] == StageRef{0, r} && st[0] == StageRef{1, s.ranks - 1 - r}))
          << "rank " << r;
    } else {
      EXPECT_EQ(st[0], (StageRef{0, r}));
      EXPECT_EQ(st[1], (StageRef{0, 2 * s.ranks - 1 - r}));
    }
    for (const StageRef& x : st) EXPECT_TRUE(held.insert(key(x, 0)).second) << "held twice";
  }
  EXPECT_EQ(static_cast<int>(held.size()), s.stages * s.directions) << "every stage held once";
}

// One F and one backward per (stage, micro-batch), on the holding rank; a W only after its BI.
void expect_each_chunk_once(const Schedule& s) {
  std::map<Key, int> forwards, backwards, split, weights;
  for (int r = 0; r < s.ranks; ++r) {
    std::set<Key> awaiting_w;
    for (const Op& op : s.ops[r]) {
      auto on_rank = [&](StageRef st) { EXPECT_EQ(holder(s, st), r) << "op on wrong rank"; };
      switch (op.kind) {
        case OpKind::kForward:
          on_rank(op.stage);
          ++forwards[key(op.stage, op.micro_batch)];
          break;
        case OpKind::kBackward:
          on_rank(op.stage);
          ++backwards[key(op.stage, op.micro_batch)];
          break;
        case OpKind::kBackwardInput:
          on_rank(op.stage);
          ++backwards[key(op.stage, op.micro_batch)];
          ++split[key(op.stage, op.micro_batch)];
          awaiting_w.insert(key(op.stage, op.micro_batch));
          break;
        case OpKind::kBackwardWeight:
          on_rank(op.stage);
          EXPECT_EQ(awaiting_w.erase(key(op.stage, op.micro_batch)), 1u) << "W before its BI";
          ++weights[key(op.stage, op.micro_batch)];
          break;
        case OpKind::kForwardBackward:
          on_rank(op.stage);
          on_rank(op.stage2);
          EXPECT_FALSE(op.backward_split) << "DualPipe's F&B pairs run full backwards";
          ++forwards[key(op.stage, op.micro_batch)];
          ++backwards[key(op.stage2, op.micro_batch2)];
          break;
        default: break;
      }
    }
    EXPECT_TRUE(awaiting_w.empty()) << "rank " << r << " left a BI without its W";
  }
  size_t chunks = 0;
  for (int d = 0; d < s.directions; ++d)
    for (int st = 0; st < s.stages; ++st)
      for (int m : micro_batches_of(s, d)) {
        const Key k{d, st, m};
        EXPECT_EQ(forwards[k], 1) << "F d" << d << " s" << st << " m" << m;
        EXPECT_EQ(backwards[k], 1) << "B d" << d << " s" << st << " m" << m;
        EXPECT_EQ(weights[k], split[k]) << "W d" << d << " s" << st << " m" << m;
        ++chunks;
      }
  EXPECT_EQ(forwards.size(), chunks) << "forwards of unknown (stage, micro-batch)";
  EXPECT_EQ(backwards.size(), chunks) << "backwards of unknown (stage, micro-batch)";
}

// A transfer's identity: (is gradient, direction, stage of the receiver, micro-batch, from, to).
// An activation goes from stage s to s+1; a gradient from stage s to s-1.
using Wire = std::tuple<bool, int, int, int, int, int>;

void expect_transfers_match(const Schedule& s) {
  std::map<Wire, int> sends, recvs;
  for (int r = 0; r < s.ranks; ++r) {
    for (const Op& op : s.ops[r]) {
      if (!is_transfer(op.kind)) continue;
      EXPECT_NE(op.peer, r) << "transfer to self";
      EXPECT_GE(op.peer, 0);
      EXPECT_LT(op.peer, s.ranks);
      const int d = op.stage.direction, st = op.stage.stage, m = op.micro_batch;
      switch (op.kind) {
        case OpKind::kSendActivation: ++sends[{false, d, st + 1, m, r, op.peer}]; break;
        case OpKind::kRecvActivation: ++recvs[{false, d, st, m, op.peer, r}]; break;
        case OpKind::kSendGradient: ++sends[{true, d, st - 1, m, r, op.peer}]; break;
        case OpKind::kRecvGradient: ++recvs[{true, d, st, m, op.peer, r}]; break;
        default: break;
      }
    }
  }
  for (const auto& [w, n] : sends) {
    EXPECT_EQ(n, 1) << "duplicate send";
    EXPECT_EQ(recvs.count(w), 1u) << "send without receive: grad " << std::get<0>(w) << " d"
                                  << std::get<1>(w) << " s" << std::get<2>(w) << " m"
                                  << std::get<3>(w) << " " << std::get<4>(w) << "->"
                                  << std::get<5>(w);
    // The peer really holds the neighbouring stage.
    EXPECT_EQ(holder(s, {std::get<1>(w), std::get<2>(w)}), std::get<5>(w));
  }
  for (const auto& [w, n] : recvs) {
    EXPECT_EQ(n, 1) << "duplicate receive";
    EXPECT_EQ(sends.count(w), 1u) << "receive without send";
  }
  // Every stage boundary that crosses ranks carries one activation and one gradient per
  // micro-batch; DualPipeV's tip (stage ranks-1 → ranks, both on the last rank) carries none.
  size_t crossings = 0;
  for (int d = 0; d < s.directions; ++d)
    for (int st = 1; st < s.stages; ++st)
      if (holder(s, {d, st}) != holder(s, {d, st - 1}))
        crossings += micro_batches_of(s, d).size();
  EXPECT_EQ(sends.size(), 2 * crossings);
}

void expect_well_formed(const Schedule& s) {
  SCOPED_TRACE(where(s));
  expect_placement(s);
  expect_each_chunk_once(s);
  expect_transfers_match(s);
  // The simulator repeats these checks its own way and adds the one that needs execution:
  // no rank waits forever (deadlock).
  const SimulationResult run = simulate(s, Costs{});
  EXPECT_TRUE(run.ok) << run.error;
  Costs slow_links;
  slow_links.transfer = 0.25;
  const SimulationResult slow = simulate(s, slow_links);
  EXPECT_TRUE(slow.ok) << slow.error;
}

TEST(DualPipe, EveryShapeIsWellFormed) {
  for (int ranks : {2, 4, 6, 8, 16})
    for (int extra : {0, 2, 4, 10}) {
      const Schedule s = make_dualpipe(ranks, 2 * ranks + extra);
      EXPECT_EQ(s.kind, ScheduleKind::kDualPipe);
      EXPECT_EQ(s.directions, 2);
      EXPECT_EQ(s.stages, ranks);
      expect_well_formed(s);
    }
}

TEST(DualPipeV, EveryShapeIsWellFormed) {
  for (int ranks : {1, 2, 3, 4, 8, 16})
    for (int extra : {0, 1, 2, 5, 10}) {
      const Schedule s = make_dualpipev(ranks, 2 * ranks + extra);
      EXPECT_EQ(s.kind, ScheduleKind::kDualPipeV);
      EXPECT_EQ(s.directions, 1);
      EXPECT_EQ(s.stages, 2 * ranks);
      expect_well_formed(s);
    }
}

// The first ops follow the published phase structure: rank r of DualPipeV starts with
// 2(D−r−1) forwards of its stage r, then alternates stage r and stage 2D−1−r.
TEST(DualPipeV, WarmUpFollowsThePhases) {
  const int D = 4;
  const Schedule s = make_dualpipev(D, 10);
  for (int r = 0; r < D; ++r) {
    std::vector<Op> compute;
    for (const Op& op : s.ops[r])
      if (!is_transfer(op.kind)) compute.push_back(op);
    int i = 0;
    for (int k = 0; k < 2 * (D - r - 1); ++k, ++i) {
      EXPECT_EQ(compute[i].kind, OpKind::kForward);
      EXPECT_EQ(compute[i].stage.stage, r);
      EXPECT_EQ(compute[i].micro_batch, k);
    }
    EXPECT_EQ(compute[i].kind, OpKind::kForward);
    EXPECT_EQ(compute[i + 1].kind, OpKind::kForward);
    EXPECT_EQ(compute[i + 1].stage.stage, 2 * D - 1 - r) << "rank " << r;
    EXPECT_EQ(compute[i + 1].micro_batch, 0);
    // The op list ends with W's (the deferred weight gradients fill the cool-down).
    EXPECT_EQ(compute.back().kind, OpKind::kBackwardWeight);
  }
  // The tip of the V is local: rank D−1 never sends stage D−1's output anywhere.
  for (const Op& op : s.ops[D - 1]) {
    if (op.kind == OpKind::kSendActivation) {
      EXPECT_NE(op.stage.stage, D - 1);
    }
  }
}

// Micro-batches 0..N/2−1 run in direction 0 and N/2..N−1 in direction 1; the outer ranks feed
// them in (rank 0 direction 0, rank R−1 direction 1).
TEST(DualPipe, DirectionsSplitTheMicroBatches) {
  const Schedule s = make_dualpipe(4, 12);
  for (const Op& op : s.ops[0]) {
    if (op.kind == OpKind::kForward && op.stage == StageRef{0, 0}) {
      EXPECT_LT(op.micro_batch, 6);
    }
  }
  std::vector<int> fed;
  for (const Op& op : s.ops[3])
    if (op.kind == OpKind::kForward && op.stage == StageRef{1, 0}) fed.push_back(op.micro_batch);
  ASSERT_FALSE(fed.empty());
  EXPECT_EQ(fed.front(), 6);
}

// --- the published figures ----------------------------------------------------------------
// DualPipe README table (deepseek-ai/DualPipe) and DeepSeek-V3 report (arXiv 2412.19437)
// §3.2.1: bubble (PP/2 − 1)(F&B + B − 3W), activations PP + 1, parameters 2×. What the numbers
// are, as measured by simulate():
//  - bubble: a rank's makespan − busy time. The formula is the LARGEST over ranks: the ranks
//    at the turn-around (DualPipe's middle ranks, DualPipeV's last ones) run the fewest
//    overlapped pairs. When F&B = F + B (overlap gains nothing) every rank has exactly it;
//    when F&B < F + B the outer ranks run more separate chunks and idle less.
//  - the formula is exact when F = B − W, i.e. a forward costs as much as the input-gradient
//    half of a backward (as ZB-H1's formula assumes F = BI = W, Qi et al. 2023); every cost
//    set below keeps that. Other costs make it an approximation either way (F = 1, B = 1,
//    W = 0.5, F&B = 1.5 at PP = 4: 1.5 simulated vs 1.0 by the formula).
//  - activations: the most (stage, micro-batch) forward activations a rank holds at once,
//    each of one stage: every rank reaches PP + 1 (PP after the warm-up, plus the forward of
//    the first F&B, counted before its backward frees one).
//  - parameters: two stages per rank (expect_placement); a DualPipe stage is 1/PP of the
//    model, hence 2×.
//  - DualPipeV on D ranks is DualPipe on PP = 2D ranks folded at the middle: PP here is the
//    number of stages, 2D; its figures are (D − 1)(F&B + B − 3W) and 2D + 1 activations, in
//    units of one of the 2D stages (its parameters are 2 of 2D stages per rank: 1× of D ranks).
// Costs are multiples of 0.5: every sum is exact in binary, so equality is exact.
Costs costs(double F, double B, double W, double FB) {
  Costs c;
  c.F = F, c.B = B, c.W = W, c.FB = FB;
  return c;
}

void expect_published_figures(const Schedule& s, int pp) {
  SCOPED_TRACE(where(s));
  for (const Costs& c : {costs(1, 2, 1, 3), costs(2, 3, 1, 5), costs(1, 2, 1, 2.5),
                         costs(1, 2, 1, 2), costs(1.5, 2, 0.5, 3)}) {
    SCOPED_TRACE("F " + std::to_string(c.F) + " B " + std::to_string(c.B) + " W " +
                 std::to_string(c.W) + " F&B " + std::to_string(c.FB));
    const SimulationResult run = simulate(s, c);
    ASSERT_TRUE(run.ok) << run.error;
    const double formula = (pp / 2 - 1) * (c.FB + c.B - 3 * c.W);
    double largest = 0;
    for (int r = 0; r < s.ranks; ++r) {
      largest = std::max(largest, run.bubble[r]);
      if (c.FB == c.F + c.B) {
        EXPECT_DOUBLE_EQ(run.bubble[r], formula) << "rank " << r;
      }
      EXPECT_LE(run.bubble[r], formula) << "rank " << r;
      EXPECT_EQ(run.peak_activations[r], pp + 1) << "rank " << r;
    }
    EXPECT_DOUBLE_EQ(largest, formula);
  }
}

TEST(DualPipe, MatchesThePublishedBubbleAndActivations) {
  for (int ranks : {2, 4, 8, 16})
    for (int extra : {0, 2, 6, 20})
      expect_published_figures(make_dualpipe(ranks, 2 * ranks + extra), ranks);
}

TEST(DualPipeV, MatchesThePublishedBubbleAndActivations) {
  for (int ranks : {1, 2, 4, 8})
    for (int extra : {0, 1, 6, 20})
      expect_published_figures(make_dualpipev(ranks, 2 * ranks + extra), 2 * ranks);
}

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}

TEST(DualPipe, ImpossibleShapesThrowWithTheArithmetic) {
  EXPECT_NE(error_of([] { make_dualpipe(3, 12); }).find("even number of pipeline ranks"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_dualpipe(0, 12); }).find("got 0"), std::string::npos);
  const std::string few = error_of([] { make_dualpipe(4, 6); });
  EXPECT_NE(few.find("2·4 = 8"), std::string::npos) << few;
  EXPECT_NE(few.find("got 6"), std::string::npos) << few;
  EXPECT_NE(error_of([] { make_dualpipe(4, 9); }).find("got 9"), std::string::npos);
}

TEST(DualPipeV, ImpossibleShapesThrowWithTheArithmetic) {
  EXPECT_NE(error_of([] { make_dualpipev(0, 4); }).find("got 0"), std::string::npos);
  const std::string few = error_of([] { make_dualpipev(4, 7); });
  EXPECT_NE(few.find("2·4 = 8"), std::string::npos) << few;
  EXPECT_NE(few.find("got 7"), std::string::npos) << few;
}

}  // namespace
}  // namespace baleine::parallel
