#pragma once
// Pipeline schedules as data (issue 4). A schedule is, for every pipeline rank, the ordered list
// of operations it performs for one optimizer step: compute ops on (stage, micro-batch) and the
// point-to-point transfers between ranks. Generators build them; the simulator (simulate())
// executes them with given costs, checks them, and measures bubbles and live activations;
// nothing here touches a tensor.
//
// Terms (DeepSeek's DualPipe README): F = forward chunk; B = FULL backward chunk (input and
// weight gradients); when the backward is split, BI = backward for inputs (cost B − W) and
// W = backward for weights; F&B = a forward chunk and a backward chunk of two different
// micro-batches run overlapped as one op.
//
// Placement:
//   1F1B / ZB1P: rank r holds stage r of `ranks` stages.
//   DualPipe:    ranks must be even; micro-batches are split in two halves fed from both ends.
//                Direction 0 runs stages 0..R-1 on ranks 0..R-1; direction 1 runs them on
//                ranks R-1..0. A rank therefore holds two stages' parameters (2x parameters):
//                stage r of direction 0 and stage R-1-r of direction 1. Stages here are
//                numbered per direction: StageRef{direction, stage}.
//   DualPipeV:   `ranks` = D ranks hold 2D stages in a V: rank r holds stage r and stage
//                2D-1-r (one direction; the activations go down the ranks and come back up).
#include <cstdint>
#include <string>
#include <vector>

namespace baleine::parallel {

enum class ScheduleKind { k1F1B, kZB1P, kDualPipe, kDualPipeV };

// "1f1b", "zb1p", "dualpipe", "dualpipev"; parse returns false on an unknown name.
const char* schedule_name(ScheduleKind kind);
bool parse_schedule_name(const std::string& name, ScheduleKind* kind);

enum class OpKind {
  kForward,          // F     (stage, micro_batch)
  kBackward,         // B     full backward: input and weight gradients
  kBackwardInput,    // BI    input gradient only; its W comes later
  kBackwardWeight,   // W     weight gradient of an earlier BI
  kForwardBackward,  // F&B   forward of (stage, micro_batch) overlapped with the backward
                     //       (full, or input-only when backward_split) of (stage2, micro_batch2)
  // Transfers are labelled from each end's own point of view: a send names the stage that
  // PRODUCED the tensor, a recv the stage that CONSUMES it. send-act s2 m0 (rank of s2) pairs
  // with recv-act s3 m0 (rank of s3); send-grad s3 m0 pairs with recv-grad s2 m0.
  kSendActivation,   // to `peer`: the output of (stage, micro_batch)'s forward
  kRecvActivation,   // from `peer`: the input of (stage, micro_batch)'s forward
  kSendGradient,     // to `peer`: the input gradient computed by (stage, micro_batch)'s backward
  kRecvGradient,     // from `peer`: the output gradient that (stage, micro_batch)'s backward needs
};

// A stage of the model. direction is 0 except for DualPipe's second pipeline (1).
struct StageRef {
  int direction = 0;
  int stage = 0;
  bool operator==(const StageRef& o) const { return direction == o.direction && stage == o.stage; }
};

struct Op {
  OpKind kind = OpKind::kForward;
  StageRef stage;
  int micro_batch = -1;
  // kForwardBackward only: the backward half.
  StageRef stage2;
  int micro_batch2 = -1;
  bool backward_split = false;  // kForwardBackward: its backward is BI (a W follows later)
  int peer = -1;                // transfers: the other rank
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::k1F1B;
  int ranks = 0;
  int stages = 0;          // per direction (DualPipe: = ranks, twice; DualPipeV: 2·ranks)
  int directions = 1;      // 2 for DualPipe
  int micro_batches = 0;   // in total (DualPipe: half per direction)
  std::vector<std::vector<StageRef>> stages_of_rank;  // what each rank holds
  std::vector<std::vector<Op>> ops;                   // per rank, in execution order
  // Which micro-batches run in which direction (DualPipe: the first half in 0, the rest in 1).
  int direction_of(int micro_batch) const;
  int rank_of(const StageRef& stage) const;
};

// Throws std::invalid_argument with the arithmetic for impossible shapes (ranks < 1, odd ranks
// for DualPipe, micro_batches < 2·ranks for DualPipe / DualPipeV, micro_batches < 1, ...).
Schedule make_schedule(ScheduleKind kind, int ranks, int micro_batches);

// One line per op, e.g. "F s0 m3", "BI s1 m0", "F&B s0 m5 | B s0 m1", "send-act s0 m3 -> r1".
std::string describe(const Op& op);
// "s3" for the (only) first direction, "d1:s3" for DualPipe's second pipeline.
std::string describe(const StageRef& stage);

// --- simulation ----------------------------------------------------------------------------
//
// What the simulator reproduces of the published table (tests/parallel/schedule_formulas_test):
//   1F1B: bubble (PP−1)(F+B) on every rank, peak activations PP on rank 0.
//   ZB1P: (PP−1)(F+B−2W) on every rank when W <= B − W and micro_batches >= PP; with a heavier
//         W it is (PP−1)·F.
//   DualPipe / DualPipeV: the WORST rank's bubble is (PP/2−1)(F&B+B−3W) and every rank peaks at
//         PP+1 activations, where PP counts the stages of one model (DualPipeV on D ranks: PP =
//         2D). The equality is exact when F = B − W (the README figure's proportions); when also
//         F&B = F + B every rank has that bubble. Other cost ratios give other bubbles.

struct Costs {
  double F = 1.0;
  double B = 2.0;          // full backward
  double W = 1.0;          // weight part of B; BI costs B - W
  double FB = 3.0;         // overlapped F&B pair (F + B when nothing overlaps)
  double transfer = 0.0;   // latency of one send → recv
};

struct TimelineEntry {     // one compute op as it ran
  int op_index = 0;        // into schedule.ops[rank]
  double start = 0, end = 0;
};

struct SimulationResult {
  bool ok = false;
  std::string error;                  // why not ok: deadlock (who waits for what), unmatched
                                      // transfer, missing or repeated F/B/W of a micro-batch
  double makespan = 0;
  std::vector<double> busy;           // per rank: Σ compute time
  std::vector<double> bubble;         // per rank: makespan − busy
  std::vector<int> peak_activations;  // per rank: most micro-batch activations held at once
                                      // (+1 at an F, −1 when its backward (B or BI) completes)
  std::vector<std::vector<TimelineEntry>> timeline;  // per rank, compute ops only
};

// Executes the op lists: each rank runs its ops in order; a compute op starts when the rank is
// free and its inputs have arrived (a recv completes at the matching send's time + transfer;
// sends never block). Checks everything listed in SimulationResult::error.
SimulationResult simulate(const Schedule& schedule, const Costs& costs);

}  // namespace baleine::parallel
