// simulate() on hand-built schedules small enough to time by hand (2 ranks, 2 micro-batches),
// and on broken ones that it must refuse, naming the ranks and ops at fault.
#include <gtest/gtest.h>

#include <string>

#include "parallel/schedule.h"
#include "tests/parallel/schedule_test_support.h"

namespace baleine::parallel {
namespace {

Op op(OpKind kind, int stage, int micro_batch, int peer = -1) {
  return schedule_testing::make_op(kind, stage, micro_batch, peer);
}

Op fused(int stage, int micro_batch, int stage2, int micro_batch2, bool split) {
  Op o = op(OpKind::kForwardBackward, stage, micro_batch);
  o.stage2 = StageRef{0, stage2};
  o.micro_batch2 = micro_batch2;
  o.backward_split = split;
  return o;
}

// `ranks` ranks, one direction, `stages_per_rank` stages on each in the order given.
Schedule blank(int ranks, int micro_batches, std::vector<std::vector<int>> stages_of_rank) {
  Schedule s;
  s.ranks = ranks;
  s.micro_batches = micro_batches;
  s.ops.resize(ranks);
  for (const auto& held : stages_of_rank) {
    s.stages_of_rank.emplace_back();
    for (int st : held) s.stages_of_rank.back().push_back(StageRef{0, st});
    s.stages += static_cast<int>(held.size());
  }
  return s;
}

constexpr auto F = OpKind::kForward;
constexpr auto B = OpKind::kBackward;
constexpr auto BI = OpKind::kBackwardInput;
constexpr auto W = OpKind::kBackwardWeight;
constexpr auto SendAct = OpKind::kSendActivation;
constexpr auto RecvAct = OpKind::kRecvActivation;
constexpr auto SendGrad = OpKind::kSendGradient;
constexpr auto RecvGrad = OpKind::kRecvGradient;

// 1F1B on 2 ranks with 2 micro-batches, written out by hand.
Schedule one_f_one_b() {
  Schedule s = blank(2, 2, {{0}, {1}});
  s.ops[0] = {op(F, 0, 0),       op(SendAct, 0, 0, 1), op(F, 0, 1),        op(SendAct, 0, 1, 1),
              op(RecvGrad, 0, 0, 1), op(B, 0, 0),      op(RecvGrad, 0, 1, 1), op(B, 0, 1)};
  s.ops[1] = {op(RecvAct, 1, 0, 0), op(F, 1, 0), op(B, 1, 0), op(SendGrad, 1, 0, 0),
              op(RecvAct, 1, 1, 0), op(F, 1, 1), op(B, 1, 1), op(SendGrad, 1, 1, 0)};
  return s;
}

// Costs with F=1, B=2 (W=1 of it), F&B=3: every time below is a small integer, exact in double.
Costs unit_costs(double transfer = 0) {
  Costs c;
  c.F = 1, c.B = 2, c.W = 1, c.FB = 3, c.transfer = transfer;
  return c;
}

TEST(ScheduleSimulator, OneFOneBTwoRanksMatchesHandTiming) {
  // r0: F0 [0,1] F1 [1,2] .......... B0 [4,6] . B1 [7,9]
  // r1: ....... F0 [1,2] B0 [2,4] F1 [4,5] B1 [5,7]
  const auto r = simulate(one_f_one_b(), unit_costs());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.makespan, 9);  // (m + PP − 1)(F + B) = 3 · 3
  for (int rank : {0, 1}) {
    EXPECT_DOUBLE_EQ(r.busy[rank], 6);
    EXPECT_DOUBLE_EQ(r.bubble[rank], 3);  // (PP − 1)(F + B), the README's 1F1B row
  }
  EXPECT_EQ(r.peak_activations, (std::vector<int>{2, 1}));
  ASSERT_EQ(r.timeline[0].size(), 4u);
  EXPECT_EQ(r.timeline[0][2].op_index, 5);
  EXPECT_DOUBLE_EQ(r.timeline[0][2].start, 4);
  EXPECT_DOUBLE_EQ(r.timeline[0][3].start, 7);
  EXPECT_DOUBLE_EQ(r.timeline[1][2].start, 4);  // F1 waits for rank 1's own B0, not its data
}

TEST(ScheduleSimulator, TransferLatencyDelaysEveryRecv) {
  // Each of the three hops on the critical path (act m0, grad m0 ... grad m1) costs 0.5:
  // r1 F0 [1.5,2.5] B0 [2.5,4.5] F1 [4.5,5.5] B1 [5.5,7.5]; r0 B0 [5,7] B1 [8,10].
  const auto r = simulate(one_f_one_b(), unit_costs(0.5));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.makespan, 10);
  EXPECT_DOUBLE_EQ(r.timeline[0][2].start, 5);
  EXPECT_DOUBLE_EQ(r.timeline[0][3].start, 8);
  EXPECT_DOUBLE_EQ(r.bubble[1], 4);
}

TEST(ScheduleSimulator, SplitBackwardSendsTheGradientBeforeW) {
  // Rank 1 runs BI (cost B − W = 1), sends, then W: rank 0's backward starts 1 earlier than
  // with a full B, and rank 1's W fills time it would otherwise wait.
  Schedule s = one_f_one_b();
  s.ops[1] = {op(RecvAct, 1, 0, 0), op(F, 1, 0), op(BI, 1, 0), op(SendGrad, 1, 0, 0),
              op(RecvAct, 1, 1, 0), op(F, 1, 1), op(BI, 1, 1), op(SendGrad, 1, 1, 0),
              op(W, 1, 0),          op(W, 1, 1)};
  const auto r = simulate(s, unit_costs());
  ASSERT_TRUE(r.ok) << r.error;
  // r1: F0 [1,2] BI0 [2,3] F1 [3,4] BI1 [4,5] W0 [5,6] W1 [6,7]; r0: B0 [3,5] B1 [5,7].
  EXPECT_DOUBLE_EQ(r.timeline[0][2].start, 3);
  EXPECT_DOUBLE_EQ(r.timeline[0][3].start, 5);
  EXPECT_DOUBLE_EQ(r.makespan, 7);
  EXPECT_DOUBLE_EQ(r.busy[1], 6);
  EXPECT_EQ(r.peak_activations[1], 1);  // BI frees the activation; W keeps only weights' inputs
}

TEST(ScheduleSimulator, FusedForwardBackwardCostsFBAndCountsBothHalves) {
  // Rank 1 overlaps F of m1 with B of m0 as one F&B op (cost FB = 3): r1 F0 [1,2] F&B [2,5]
  // B1 [5,7]. The fused op's forward is live while its backward runs: peak 2 on rank 1.
  Schedule s = one_f_one_b();
  s.ops[1] = {op(RecvAct, 1, 0, 0), op(F, 1, 0), op(RecvAct, 1, 1, 0), fused(1, 1, 1, 0, false),
              op(SendGrad, 1, 0, 0), op(B, 1, 1), op(SendGrad, 1, 1, 0)};
  auto r = simulate(s, unit_costs());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.timeline[1][1].start, 2);
  EXPECT_DOUBLE_EQ(r.timeline[1][1].end, 5);
  EXPECT_DOUBLE_EQ(r.timeline[0][2].start, 5);  // rank 0's B0 waits for the fused op's gradient
  EXPECT_DOUBLE_EQ(r.makespan, 9);
  EXPECT_EQ(r.peak_activations[1], 2);

  // Split: the fused op costs FB − W = 2 and its W must follow.
  s.ops[1][3].backward_split = true;
  s.ops[1].push_back(op(W, 1, 0));
  r = simulate(s, unit_costs());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.timeline[1][1].end, 4);
  EXPECT_DOUBLE_EQ(r.busy[1], 1 + 2 + 2 + 1);
}

TEST(ScheduleSimulator, TurnOfTheVStaysOnTheRank) {
  // DualPipeV-like placement with one rank holding both stages: the forward of stage 1 takes
  // its input from the local forward of stage 0, the backward of stage 0 from the local
  // backward of stage 1; no transfers at all.
  Schedule s = blank(1, 2, {{0, 1}});
  s.ops[0] = {op(F, 0, 0), op(F, 1, 0), op(F, 0, 1), op(B, 1, 0),
              op(F, 1, 1), op(B, 0, 0), op(B, 1, 1), op(B, 0, 1)};
  const auto r = simulate(s, unit_costs());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.makespan, 4 * 1 + 4 * 2);
  EXPECT_DOUBLE_EQ(r.bubble[0], 0);
  EXPECT_EQ(r.peak_activations[0], 3);

  // Stage 1's forward before stage 0's can never run.
  std::swap(s.ops[0][0], s.ops[0][1]);
  const auto bad = simulate(s, unit_costs());
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.error.find("'F s1 m0'"), std::string::npos) << bad.error;
  EXPECT_NE(bad.error.find("'F s0 m0' on this rank first"), std::string::npos) << bad.error;
}

TEST(ScheduleSimulator, BothRanksReceivingFirstIsADeadlockNamingBoth) {
  Schedule s = one_f_one_b();
  // Rank 0 waits for a gradient before sending any activation; rank 1 waits for the activation.
  s.ops[0] = {op(RecvGrad, 0, 0, 1), op(F, 0, 0), op(SendAct, 0, 0, 1), op(F, 0, 1),
              op(SendAct, 0, 1, 1), op(B, 0, 0), op(RecvGrad, 0, 1, 1), op(B, 0, 1)};
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("deadlock"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("rank 0 op #0 'recv-grad s0 m0 <- r1'"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("rank 1 op #0 'recv-act s1 m0 <- r0'"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("matching send from rank 1"), std::string::npos) << r.error;
}

TEST(ScheduleSimulator, MissingWIsRejected) {
  Schedule s = one_f_one_b();
  s.ops[1][2].kind = BI;  // BI of s1 m0 with no W after it
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("s1 m0 (rank 1): split backward with 0 W ops"), std::string::npos)
      << r.error;
}

TEST(ScheduleSimulator, WBeforeItsBIIsRejected) {
  Schedule s = one_f_one_b();
  s.ops[1][2].kind = BI;
  s.ops[1].insert(s.ops[1].begin() + 2, op(W, 1, 0));
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("'W s1 m0' waits for its BI"), std::string::npos) << r.error;
}

TEST(ScheduleSimulator, DuplicatedForwardIsRejected) {
  Schedule s = one_f_one_b();
  s.ops[0].insert(s.ops[0].begin() + 1, op(F, 0, 0));
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("s0 m0 (rank 0): 2 forwards, expected 1"), std::string::npos)
      << r.error;
}

TEST(ScheduleSimulator, UnmatchedSendIsRejected) {
  Schedule s = one_f_one_b();
  s.ops[1].erase(s.ops[1].begin() + 4);  // rank 1 forgets to receive m1's activation
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("rank 0 op #3 'send-act s0 m1 -> r1': unmatched send"),
            std::string::npos)
      << r.error;
}

TEST(ScheduleSimulator, SendingTheSameMessageTwiceIsRejected) {
  Schedule s = one_f_one_b();
  s.ops[0].insert(s.ops[0].begin() + 2, op(SendAct, 0, 0, 1));
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("'send-act s0 m0 -> r1': transferred 2 times"), std::string::npos)
      << r.error;
}

TEST(ScheduleSimulator, OpOnAStageTheRankDoesNotHoldIsRejected) {
  Schedule s = one_f_one_b();
  s.ops[0].push_back(op(W, 1, 1));
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("rank 0 op #8 'W s1 m1': rank 0 does not hold this stage (rank 1 does)"),
            std::string::npos)
      << r.error;
}

TEST(ScheduleSimulator, TransferToTheWrongPeerIsRejected) {
  Schedule s = blank(3, 1, {{0}, {1}, {2}});
  s.ops[0] = {op(F, 0, 0), op(SendAct, 0, 0, 2), op(RecvGrad, 0, 0, 1), op(B, 0, 0)};
  s.ops[1] = {op(RecvAct, 1, 0, 0), op(F, 1, 0), op(SendAct, 1, 0, 2), op(RecvGrad, 1, 0, 2),
              op(B, 1, 0), op(SendGrad, 1, 0, 0)};
  s.ops[2] = {op(RecvAct, 2, 0, 1), op(F, 2, 0), op(B, 2, 0), op(SendGrad, 2, 0, 1)};
  const auto r = simulate(s, unit_costs());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("'send-act s0 m0 -> r2': peer should be rank 1"), std::string::npos)
      << r.error;
  s.ops[0][1].peer = 1;
  EXPECT_TRUE(simulate(s, unit_costs()).ok);
}

TEST(ScheduleSimulator, MalformedShapesAndCostsAreRejected) {
  Schedule s = one_f_one_b();
  s.ops.pop_back();
  EXPECT_NE(simulate(s, unit_costs()).error.find("ops has 1 rank lists for 2 ranks"),
            std::string::npos);
  Costs c = unit_costs();
  c.W = 3;
  EXPECT_NE(simulate(one_f_one_b(), c).error.find("exceeds the full backward"),
            std::string::npos);
  s = one_f_one_b();
  s.stages_of_rank[1][0].stage = 0;  // both ranks claim stage 0, nobody stage 1
  EXPECT_NE(simulate(s, unit_costs()).error.find("both hold"), std::string::npos);
}

}  // namespace
}  // namespace baleine::parallel
