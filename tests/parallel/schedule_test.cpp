// The 1F1B and ZB1P generators, names and descriptions. Structure first, without the simulator:
// every (stage, micro-batch) gets exactly one F and one backward (B, or BI then W) on the rank
// that holds the stage, every send has exactly one receive on its peer in the same order on both
// sides, forwards run in micro-batch order, and the live activations stay within 1F1B's bound.
// Then through simulate(): the bubbles of the DualPipe README's table, exactly (the costs are
// small integers, so the simulated times are exact in double precision).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/schedule.h"
#include "parallel/schedule_generators.h"
#include "tests/parallel/schedule_test_support.h"

namespace baleine::parallel {
namespace {

const ScheduleKind kSingleDirection[] = {ScheduleKind::k1F1B, ScheduleKind::kZB1P};

std::string shape(const Schedule& s) {
  return std::string(schedule_name(s.kind)) + " ranks=" + std::to_string(s.ranks) +
         " micro_batches=" + std::to_string(s.micro_batches);
}

std::vector<std::string> described(const std::vector<Op>& ops) {
  std::vector<std::string> lines;
  for (const Op& op : ops) lines.push_back(describe(op));
  return lines;
}

// The compute parts of an op: F&B counts as its forward and its backward.
struct ComputePart {
  OpKind kind;  // kForward, kBackward, kBackwardInput or kBackwardWeight
  StageRef stage;
  int micro_batch;
};

std::vector<ComputePart> compute_parts(const Op& op) {
  switch (op.kind) {
    case OpKind::kForward:
    case OpKind::kBackward:
    case OpKind::kBackwardInput:
    case OpKind::kBackwardWeight: return {{op.kind, op.stage, op.micro_batch}};
    case OpKind::kForwardBackward:
      return {{OpKind::kForward, op.stage, op.micro_batch},
              {op.backward_split ? OpKind::kBackwardInput : OpKind::kBackward, op.stage2,
               op.micro_batch2}};
    default: return {};
  }
}

using Key = std::tuple<int, int, int>;  // direction, stage, micro-batch
Key key_of(const StageRef& s, int micro_batch) { return {s.direction, s.stage, micro_batch}; }

// Where each compute part ran: rank and position in the rank's op list, by kind.
struct Placed {
  std::map<OpKind, std::vector<std::pair<int, int>>> at;
};

// Every (stage, micro-batch) has one F and one backward — a B, or a BI and a later W — on the
// rank holding the stage, with the F first; forwards and backwards run in micro-batch order.
void expect_each_micro_batch_computed_once(const Schedule& s, bool split_backward) {
  SCOPED_TRACE(shape(s));
  std::map<Key, Placed> placed;
  for (int r = 0; r < s.ranks; ++r) {
    std::map<std::pair<OpKind, int>, int> last_micro_batch;  // (kind, stage) -> last seen
    for (size_t i = 0; i < s.ops[r].size(); ++i) {
      for (const ComputePart& p : compute_parts(s.ops[r][i])) {
        placed[key_of(p.stage, p.micro_batch)].at[p.kind].push_back({r, static_cast<int>(i)});
        if (p.kind == OpKind::kBackwardWeight) continue;  // W's order is the schedule's choice
        auto [it, fresh] = last_micro_batch.insert({{p.kind, p.stage.stage}, p.micro_batch});
        if (!fresh) {
          EXPECT_LT(it->second, p.micro_batch) << "rank " << r << " op " << i << ": "
                                               << describe(s.ops[r][i]) << " out of order";
          it->second = p.micro_batch;
        }
      }
    }
  }
  EXPECT_EQ(placed.size(), static_cast<size_t>(s.stages * s.micro_batches));
  for (int stage = 0; stage < s.stages; ++stage) {
    for (int m = 0; m < s.micro_batches; ++m) {
      SCOPED_TRACE("stage " + std::to_string(stage) + " micro-batch " + std::to_string(m));
      const int holder = s.rank_of(StageRef{0, stage});
      auto& at = placed[key_of(StageRef{0, stage}, m)].at;
      const OpKind backward = split_backward ? OpKind::kBackwardInput : OpKind::kBackward;
      ASSERT_EQ(at[OpKind::kForward].size(), 1u);
      ASSERT_EQ(at[backward].size(), 1u);
      EXPECT_EQ(at[split_backward ? OpKind::kBackward : OpKind::kBackwardInput].size(), 0u);
      ASSERT_EQ(at[OpKind::kBackwardWeight].size(), split_backward ? 1u : 0u);
      EXPECT_EQ(at[OpKind::kForward][0].first, holder);
      EXPECT_EQ(at[backward][0].first, holder);
      EXPECT_LT(at[OpKind::kForward][0].second, at[backward][0].second);
      if (split_backward) {
        EXPECT_EQ(at[OpKind::kBackwardWeight][0].first, holder);
        EXPECT_LT(at[backward][0].second, at[OpKind::kBackwardWeight][0].second);
      }
    }
  }
}

// The stage whose compute op the transfer belongs to on the other side: an activation goes to
// the next stage's forward, a gradient to the previous stage's backward.
StageRef partner_stage(const Op& op) {
  StageRef s = op.stage;
  switch (op.kind) {
    case OpKind::kSendActivation: ++s.stage; break;
    case OpKind::kRecvActivation: --s.stage; break;
    case OpKind::kSendGradient: --s.stage; break;
    case OpKind::kRecvGradient: ++s.stage; break;
    default: break;
  }
  return s;
}

bool is_send(OpKind k) { return k == OpKind::kSendActivation || k == OpKind::kSendGradient; }
bool is_recv(OpKind k) { return k == OpKind::kRecvActivation || k == OpKind::kRecvGradient; }
bool is_gradient(OpKind k) { return k == OpKind::kSendGradient || k == OpKind::kRecvGradient; }

// Every send has exactly one receive on its peer, naming the partner stage and the same
// micro-batch, and each channel (from, to, activation or gradient) carries its messages in the
// same order on both sides, so an executor may match them first-in first-out. Each receive sits
// before the compute op that consumes it, each send after the op that produced it.
void expect_transfers_match(const Schedule& s) {
  SCOPED_TRACE(shape(s));
  using Channel = std::tuple<int, int, bool>;  // from, to, gradient?
  std::map<Channel, std::vector<Key>> sent, received;
  for (int r = 0; r < s.ranks; ++r) {
    std::map<std::pair<OpKind, Key>, int> computed_at;  // (kind, what) -> op index
    for (size_t i = 0; i < s.ops[r].size(); ++i) {
      for (const ComputePart& p : compute_parts(s.ops[r][i])) {
        computed_at[{p.kind, key_of(p.stage, p.micro_batch)}] = static_cast<int>(i);
      }
    }
    for (size_t i = 0; i < s.ops[r].size(); ++i) {
      const Op& op = s.ops[r][i];
      if (!is_send(op.kind) && !is_recv(op.kind)) continue;
      SCOPED_TRACE("rank " + std::to_string(r) + " op " + std::to_string(i) + ": " + describe(op));
      ASSERT_EQ(op.peer, s.rank_of(partner_stage(op)));
      ASSERT_NE(op.peer, r);
      const Key what = key_of(op.stage, op.micro_batch);
      const bool gradient = is_gradient(op.kind);
      // The compute op on this rank that produces (send) or consumes (recv) the data.
      const OpKind kind = gradient ? (s.kind == ScheduleKind::kZB1P ? OpKind::kBackwardInput
                                                                    : OpKind::kBackward)
                                   : OpKind::kForward;
      auto it = computed_at.find({kind, what});
      ASSERT_NE(it, computed_at.end()) << "no compute op on this rank uses it";
      if (is_send(op.kind)) {
        EXPECT_LT(it->second, static_cast<int>(i));
        sent[{r, op.peer, gradient}].push_back(key_of(partner_stage(op), op.micro_batch));
      } else {
        EXPECT_GT(it->second, static_cast<int>(i));
        received[{op.peer, r, gradient}].push_back(what);
      }
    }
  }
  EXPECT_EQ(sent, received);
  // And every stage boundary of every micro-batch is crossed: (stages − 1) activations and as
  // many gradients per micro-batch, all between different ranks for these schedules.
  size_t messages = 0;
  for (const auto& [channel, keys] : sent) messages += keys.size();
  EXPECT_EQ(messages, static_cast<size_t>(2 * (s.stages - 1) * s.micro_batches));
}

// Live activations in op-list order: +1 at a forward, −1 when its input gradient is computed
// (the simulator's rule), or at its W when `until_weight` (the paper's memory model, where the
// W still needs the layer inputs).
std::vector<int> peak_live(const Schedule& s, bool until_weight) {
  std::vector<int> peak(s.ranks, 0);
  for (int r = 0; r < s.ranks; ++r) {
    int live = 0;
    for (const Op& op : s.ops[r]) {
      for (const ComputePart& p : compute_parts(op)) {
        const bool frees = until_weight ? p.kind == OpKind::kBackwardWeight
                                        : p.kind == OpKind::kBackward ||
                                              p.kind == OpKind::kBackwardInput;
        if (p.kind == OpKind::kForward) peak[r] = std::max(peak[r], ++live);
        if (frees) --live;
      }
    }
    EXPECT_EQ(live, 0) << shape(s) << " rank " << r;
  }
  return peak;
}

TEST(ScheduleNames, RoundTrip) {
  for (ScheduleKind k : {ScheduleKind::k1F1B, ScheduleKind::kZB1P, ScheduleKind::kDualPipe,
                         ScheduleKind::kDualPipeV}) {
    ScheduleKind parsed = ScheduleKind::k1F1B;
    ASSERT_TRUE(parse_schedule_name(schedule_name(k), &parsed)) << schedule_name(k);
    EXPECT_EQ(parsed, k);
  }
  EXPECT_STREQ(schedule_name(ScheduleKind::kDualPipeV), "dualpipev");
  ScheduleKind untouched = ScheduleKind::kZB1P;
  for (const char* bad : {"", "gpipe", "1F1B", "dual-pipe", "dualpipe "}) {
    EXPECT_FALSE(parse_schedule_name(bad, &untouched)) << bad;
  }
  EXPECT_EQ(untouched, ScheduleKind::kZB1P);
}

TEST(ScheduleDescribe, EveryOpKind) {
  const auto op = [](OpKind kind, int stage, int micro_batch, int peer = -1) {
    return schedule_testing::make_op(kind, stage, micro_batch, peer);
  };
  EXPECT_EQ(describe(op(OpKind::kForward, 0, 3)), "F s0 m3");
  EXPECT_EQ(describe(op(OpKind::kBackward, 2, 1)), "B s2 m1");
  EXPECT_EQ(describe(op(OpKind::kBackwardInput, 1, 0)), "BI s1 m0");
  EXPECT_EQ(describe(op(OpKind::kBackwardWeight, 1, 0)), "W s1 m0");
  EXPECT_EQ(describe(op(OpKind::kSendActivation, 0, 3, 1)), "send-act s0 m3 -> r1");
  EXPECT_EQ(describe(op(OpKind::kRecvActivation, 1, 3, 0)), "recv-act s1 m3 <- r0");
  EXPECT_EQ(describe(op(OpKind::kSendGradient, 1, 3, 0)), "send-grad s1 m3 -> r0");
  EXPECT_EQ(describe(op(OpKind::kRecvGradient, 0, 3, 1)), "recv-grad s0 m3 <- r1");
  Op fb = op(OpKind::kForwardBackward, 0, 5);
  fb.stage2 = StageRef{0, 0};
  fb.micro_batch2 = 1;
  EXPECT_EQ(describe(fb), "F&B s0 m5 | B s0 m1");
  fb.stage = StageRef{1, 2};  // DualPipe's second direction is marked
  fb.backward_split = true;
  EXPECT_EQ(describe(fb), "F&B d1:s2 m5 | BI s0 m1");
}

// Two ranks, two micro-batches: small enough to read in full.
TEST(Schedule1F1B, TwoRanksInFull) {
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 2);
  EXPECT_EQ(s.stages, 2);
  EXPECT_EQ(s.directions, 1);
  EXPECT_EQ(described(s.ops[0]),
            (std::vector<std::string>{"F s0 m0", "send-act s0 m0 -> r1", "F s0 m1",
                                      "send-act s0 m1 -> r1", "recv-grad s0 m0 <- r1", "B s0 m0",
                                      "recv-grad s0 m1 <- r1", "B s0 m1"}));
  EXPECT_EQ(described(s.ops[1]),
            (std::vector<std::string>{"recv-act s1 m0 <- r0", "F s1 m0", "B s1 m0",
                                      "send-grad s1 m0 -> r0", "recv-act s1 m1 <- r0", "F s1 m1",
                                      "B s1 m1", "send-grad s1 m1 -> r0"}));
}

// Rank 1 holds back one W, which it runs after its last BI.
TEST(ScheduleZB1P, TwoRanksInFull) {
  const Schedule s = make_schedule(ScheduleKind::kZB1P, 2, 2);
  EXPECT_EQ(described(s.ops[0]),
            (std::vector<std::string>{"F s0 m0", "send-act s0 m0 -> r1", "F s0 m1",
                                      "send-act s0 m1 -> r1", "recv-grad s0 m0 <- r1", "BI s0 m0",
                                      "W s0 m0", "recv-grad s0 m1 <- r1", "BI s0 m1", "W s0 m1"}));
  EXPECT_EQ(described(s.ops[1]),
            (std::vector<std::string>{"recv-act s1 m0 <- r0", "F s1 m0", "BI s1 m0",
                                      "send-grad s1 m0 -> r0", "recv-act s1 m1 <- r0", "F s1 m1",
                                      "BI s1 m1", "send-grad s1 m1 -> r0", "W s1 m0", "W s1 m1"}));
}

TEST(ScheduleSingleDirection, StructureForManyShapes) {
  for (ScheduleKind kind : kSingleDirection) {
    const bool split = kind == ScheduleKind::kZB1P;
    for (int ranks : {1, 2, 3, 4, 5, 8, 16}) {
      for (int micro_batches : {1, 2, ranks - 1, ranks, ranks + 1, 2 * ranks, 3 * ranks + 1}) {
        if (micro_batches < 1) continue;
        const Schedule s = make_schedule(kind, ranks, micro_batches);
        ASSERT_EQ(s.kind, kind);
        ASSERT_EQ(s.ranks, ranks);
        ASSERT_EQ(s.stages, ranks);
        ASSERT_EQ(s.micro_batches, micro_batches);
        ASSERT_EQ(s.ops.size(), static_cast<size_t>(ranks));
        ASSERT_EQ(s.stages_of_rank.size(), static_cast<size_t>(ranks));
        for (int r = 0; r < ranks; ++r) {
          ASSERT_EQ(s.stages_of_rank[r].size(), 1u);
          EXPECT_EQ(s.rank_of(StageRef{0, r}), r);
        }
        for (int m = 0; m < micro_batches; ++m) EXPECT_EQ(s.direction_of(m), 0);
        expect_each_micro_batch_computed_once(s, split);
        expect_transfers_match(s);
        // 1F1B's memory: rank r holds at most PP − r micro-batches (fewer with fewer
        // micro-batches); ZB1P keeps the same, and even counting the inputs its held-back W's
        // keep alive no rank goes past PP, 1F1B's first rank (ZB-H1's bound).
        const std::vector<int> peak = peak_live(s, false);
        for (int r = 0; r < ranks; ++r) {
          EXPECT_EQ(peak[r], std::min(ranks - r, micro_batches)) << shape(s) << " rank " << r;
        }
        if (split) {
          const std::vector<int> until_weight = peak_live(s, true);
          for (int r = 0; r < ranks; ++r) EXPECT_LE(until_weight[r], ranks) << shape(s);
        }
      }
    }
  }
}

void expect_invalid(ScheduleKind kind, int ranks, int micro_batches, const std::string& says) {
  try {
    make_schedule(kind, ranks, micro_batches);
    ADD_FAILURE() << schedule_name(kind) << " " << ranks << " " << micro_batches << " accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(schedule_name(kind)), std::string::npos) << e.what();
  }
}

TEST(ScheduleSingleDirection, InvalidShapesThrowWithTheNumbers) {
  for (ScheduleKind kind : kSingleDirection) {
    expect_invalid(kind, 0, 4, "ranks = 0");
    expect_invalid(kind, -2, 4, "ranks = -2");
    expect_invalid(kind, 4, 0, "micro_batches = 0");
    expect_invalid(kind, 4, -1, "micro_batches = -1");
  }
  // The generators check on their own too, for callers that skip make_schedule.
  EXPECT_THROW(make_1f1b(0, 1), std::invalid_argument);
  EXPECT_THROW(make_zb1p(2, 0), std::invalid_argument);
  // A stage no rank holds is a caller's bug, named in the message.
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 2);
  EXPECT_THROW(s.rank_of(StageRef{0, 2}), std::invalid_argument);
  EXPECT_THROW(s.rank_of(StageRef{1, 0}), std::invalid_argument);
}

// --- through the simulator ---------------------------------------------------------------------

// The bubble table of DeepSeek's DualPipe README (also arXiv 2412.19437 §3.2.1), with
// B the full backward: 1F1B (PP − 1)(F + B); ZB1P (PP − 1)(F + B − 2W). Both schedules give
// every rank the same busy time and end together, so the formula is every rank's bubble. Costs
// with transfer 0, as in the table; ZB1P's formula assumes W <= B − W (Qi et al. 2023 §2.1
// analyse T_W <= T_B), which all three cost sets satisfy — the paper's equal F, BI and W among
// them.
TEST(ScheduleSimulated, BubblesMatchTheDualPipeReadmeTable) {
  Costs equal;  // F = BI = W = 1
  equal.F = 1, equal.B = 2, equal.W = 1, equal.FB = 3;
  Costs heavy_input = equal;
  heavy_input.B = 3;  // BI = 2, W = 1
  Costs slow_forward = equal;
  slow_forward.F = 2, slow_forward.B = 3, slow_forward.W = 1, slow_forward.FB = 5;
  for (const Costs& c : {equal, heavy_input, slow_forward}) {
    for (ScheduleKind kind : kSingleDirection) {
      for (int pp : {2, 4, 8, 16}) {
        for (int micro_batches : {pp, 2 * pp, 3 * pp + 1}) {
          const Schedule s = make_schedule(kind, pp, micro_batches);
          SCOPED_TRACE(shape(s) + " F=" + std::to_string(c.F) + " B=" + std::to_string(c.B) +
                       " W=" + std::to_string(c.W));
          const SimulationResult result = simulate(s, c);
          ASSERT_TRUE(result.ok) << result.error;
          const double expected = kind == ScheduleKind::k1F1B ? (pp - 1) * (c.F + c.B)
                                                              : (pp - 1) * (c.F + c.B - 2 * c.W);
          ASSERT_EQ(result.bubble.size(), static_cast<size_t>(pp));
          for (int r = 0; r < pp; ++r) {
            EXPECT_DOUBLE_EQ(result.bubble[r], expected) << "rank " << r;
            EXPECT_DOUBLE_EQ(result.busy[r], micro_batches * (c.F + c.B)) << "rank " << r;
            EXPECT_EQ(result.peak_activations[r], std::min(pp - r, micro_batches)) << "rank " << r;
          }
        }
      }
    }
  }
}

// Beyond the paper's regime (W > B − W) the held-back W's outlast the wait they fill, and what
// remains of ZB1P's bubble is the forward ramp, (PP − 1)·F: still never worse than 1F1B.
TEST(ScheduleSimulated, ZB1PWithHeavyWeightGradients) {
  Costs c;
  c.F = 1, c.B = 2, c.W = 1.5, c.FB = 3;
  for (int pp : {2, 4, 8, 16}) {
    const SimulationResult result = simulate(make_schedule(ScheduleKind::kZB1P, pp, 2 * pp), c);
    ASSERT_TRUE(result.ok) << result.error;
    for (int r = 0; r < pp; ++r) EXPECT_DOUBLE_EQ(result.bubble[r], (pp - 1) * c.F) << pp;
  }
}

// Transfer latency slows the pipeline but cannot make these schedules deadlock.
TEST(ScheduleSimulated, RunWithTransferLatency) {
  Costs c;
  c.transfer = 0.25;
  for (ScheduleKind kind : kSingleDirection) {
    for (int pp : {1, 2, 3, 8}) {
      for (int micro_batches : {1, pp, 2 * pp + 1}) {
        const Schedule s = make_schedule(kind, pp, micro_batches);
        const SimulationResult result = simulate(s, c);
        EXPECT_TRUE(result.ok) << shape(s) << ": " << result.error;
      }
    }
  }
}

}  // namespace
}  // namespace baleine::parallel
