// The generators, run through simulate(), against the published table (DeepSeek-V3 report,
// arXiv 2412.19437 §3.2.1 Table 2, and the DualPipe README, github.com/deepseek-ai/DualPipe):
//
//   method    bubble                   parameters  activations
//   1F1B      (PP−1)(F+B)              1×          PP
//   ZB1P      (PP−1)(F+B−2W)           1×          PP
//   DualPipe  (PP/2−1)(F&B+B−3W)       2×          PP+1
//
// B is the full backward and W its weight part; PP is the number of pipeline stages of one
// model copy: the rank count for 1F1B, ZB1P and DualPipe, and 2·ranks for DualPipeV, which the
// README presents as DualPipe "cut in half" (same bubble and activations on half the ranks).
// Activations count micro-batch × stage chunks held at once; parameters count the stages a
// rank holds, in units of one stage of a PP-stage model.
//
// Transfers cost nothing here: the table compares compute schedules, communication being what
// DualPipe's overlap hides. All costs are multiples of 0.5, so every sum is exact in double and
// the comparisons are exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "parallel/schedule.h"

namespace baleine::parallel {
namespace {

Costs costs(double F, double B, double W, double FB) {
  Costs c;
  c.F = F, c.B = B, c.W = W, c.FB = FB;
  return c;
}

// Cost sets for the formulas that hold for any chunk durations (1F1B, ZB1P): backward twice the
// forward, a light W, a heavy W, a forward slower than the backward.
const std::vector<Costs> kAnyCosts = {costs(1, 2, 1, 3), costs(2, 4, 1.5, 5), costs(1, 3, 0.5, 4),
                                      costs(3, 2, 1, 5)};

// Micro-batch counts for `pp` ranks that the schedule accepts, from the smallest it allows.
std::vector<int> micro_batch_counts(ScheduleKind kind, int pp) {
  switch (kind) {
    case ScheduleKind::k1F1B:
    case ScheduleKind::kZB1P: return {pp, pp + 1, 2 * pp, 3 * pp + 2};
    case ScheduleKind::kDualPipe: return {2 * pp, 2 * pp + 2, 3 * pp, 4 * pp};
    case ScheduleKind::kDualPipeV: return {2 * pp, 2 * pp + 1, 3 * pp, 4 * pp};
  }
  return {};
}

SimulationResult run(ScheduleKind kind, int pp, int micro_batches, const Costs& c) {
  const Schedule s = make_schedule(kind, pp, micro_batches);
  SimulationResult r = simulate(s, c);
  EXPECT_TRUE(r.ok) << r.error;
  return r;
}

std::string trace(ScheduleKind kind, int pp, int micro_batches, const Costs& c) {
  return std::string(schedule_name(kind)) + " ranks " + std::to_string(pp) + " micro-batches " +
         std::to_string(micro_batches) + " costs F " + std::to_string(c.F) + " B " +
         std::to_string(c.B) + " W " + std::to_string(c.W) + " F&B " + std::to_string(c.FB);
}

double worst(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

TEST(ScheduleFormulas, OneFOneBBubbleIsPPMinusOneTimesFPlusB) {
  for (int pp : {2, 4, 8, 16}) {
    for (int mb : micro_batch_counts(ScheduleKind::k1F1B, pp)) {
      for (const Costs& c : kAnyCosts) {
        SCOPED_TRACE(trace(ScheduleKind::k1F1B, pp, mb, c));
        const auto r = run(ScheduleKind::k1F1B, pp, mb, c);
        if (!r.ok) continue;
        for (double bubble : r.bubble) EXPECT_EQ(bubble, (pp - 1) * (c.F + c.B));
        EXPECT_EQ(r.peak_activations[0], pp);  // the first stage holds PP micro-batches
      }
    }
  }
}

TEST(ScheduleFormulas, ZB1PBubbleIsPPMinusOneTimesFPlusBMinusTwoW) {
  // ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism") needs at least PP micro-batches
  // to fill the pipeline; every count here has that many.
  for (int pp : {2, 4, 8, 16}) {
    for (int mb : micro_batch_counts(ScheduleKind::kZB1P, pp)) {
      for (const Costs& c : kAnyCosts) {
        SCOPED_TRACE(trace(ScheduleKind::kZB1P, pp, mb, c));
        const auto r = run(ScheduleKind::kZB1P, pp, mb, c);
        if (!r.ok) continue;
        for (double bubble : r.bubble) EXPECT_EQ(bubble, (pp - 1) * (c.F + c.B - 2 * c.W));
        EXPECT_EQ(*std::max_element(r.peak_activations.begin(), r.peak_activations.end()), pp);
      }
    }
  }
}

// PP, the stage count of one model copy, for the DualPipe family.
int model_stages(ScheduleKind kind, int ranks) {
  return kind == ScheduleKind::kDualPipeV ? 2 * ranks : ranks;
}

TEST(ScheduleFormulas, DualPipeBubbleMatchesTheTableAtTheFigureProportions) {
  // The README's figure draws F, BI and W as equal cells (so B = 2F) and an F&B cell as wide as
  // F + B. At those proportions every rank's bubble is exactly (PP/2−1)(F&B+B−3W); a second
  // scale checks the formula is not an accident of unit costs.
  for (ScheduleKind kind : {ScheduleKind::kDualPipe, ScheduleKind::kDualPipeV}) {
    for (int ranks : {2, 4, 8, 16}) {
      const int pp = model_stages(kind, ranks);
      for (int mb : micro_batch_counts(kind, ranks)) {
        for (const Costs& c : {costs(1, 2, 1, 3), costs(2.5, 5, 2.5, 7.5)}) {
          SCOPED_TRACE(trace(kind, ranks, mb, c));
          const auto r = run(kind, ranks, mb, c);
          if (!r.ok) continue;
          for (double bubble : r.bubble) EXPECT_EQ(bubble, (pp / 2 - 1) * (c.FB + c.B - 3 * c.W));
        }
      }
    }
  }
}

TEST(ScheduleFormulas, DualPipeWorstRankMatchesTheTableWhenFAndBOverlap) {
  // With the same equal F, BI and W cells but an F&B shorter than F + B (the overlap DualPipe
  // exists for), ranks near the ends of the pipeline idle less; the worst rank's bubble is the
  // table's figure and no rank's is above it.
  for (ScheduleKind kind : {ScheduleKind::kDualPipe, ScheduleKind::kDualPipeV}) {
    for (int ranks : {2, 4, 8, 16}) {
      const int pp = model_stages(kind, ranks);
      for (int mb : micro_batch_counts(kind, ranks)) {
        for (const Costs& c : {costs(1, 2, 1, 2.5), costs(1, 2, 1, 2), costs(2, 4, 2, 4.5)}) {
          SCOPED_TRACE(trace(kind, ranks, mb, c));
          const auto r = run(kind, ranks, mb, c);
          if (!r.ok) continue;
          EXPECT_EQ(worst(r.bubble), (pp / 2 - 1) * (c.FB + c.B - 3 * c.W));
        }
      }
    }
  }
}

TEST(ScheduleFormulas, DualPipeHoldsPPPlusOneActivationsAndTwiceTheParameters) {
  for (ScheduleKind kind : {ScheduleKind::kDualPipe, ScheduleKind::kDualPipeV}) {
    for (int ranks : {2, 4, 8, 16}) {
      const int pp = model_stages(kind, ranks);
      for (int mb : micro_batch_counts(kind, ranks)) {
        SCOPED_TRACE(trace(kind, ranks, mb, costs(1, 2, 1, 3)));
        const Schedule s = make_schedule(kind, ranks, mb);
        const auto r = run(kind, ranks, mb, costs(1, 2, 1, 3));
        if (!r.ok) continue;
        for (int rank = 0; rank < ranks; ++rank) {
          EXPECT_EQ(r.peak_activations[rank], pp + 1) << "rank " << rank;
          // Two stages of a PP-stage model on every rank: 2× a 1F1B rank's parameters.
          EXPECT_EQ(s.stages_of_rank[rank].size(), 2u) << "rank " << rank;
        }
      }
    }
  }
}

TEST(ScheduleFormulas, OneFOneBAndZB1PHoldOneStagePerRank) {
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kZB1P}) {
    const Schedule s = make_schedule(kind, 4, 8);
    for (const auto& held : s.stages_of_rank) EXPECT_EQ(held.size(), 1u);
  }
}

TEST(ScheduleFormulas, EveryScheduleRunsWithTransferLatency) {
  // Latency moves times but must never expose an ordering problem: each rank's op order alone
  // decides what can run. The bubble can only grow.
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kZB1P, ScheduleKind::kDualPipe,
                            ScheduleKind::kDualPipeV}) {
    for (int ranks : {2, 4, 8}) {
      const int mb = micro_batch_counts(kind, ranks)[1];
      Costs slow = costs(1, 2, 1, 3);
      slow.transfer = 0.5;
      const auto fast = run(kind, ranks, mb, costs(1, 2, 1, 3));
      const auto r = run(kind, ranks, mb, slow);
      if (!r.ok || !fast.ok) continue;
      EXPECT_GE(r.makespan, fast.makespan) << schedule_name(kind) << " ranks " << ranks;
    }
  }
}

}  // namespace
}  // namespace baleine::parallel
