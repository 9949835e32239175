// Schedule names, placement queries, op descriptions, make_schedule() dispatch, and the two
// single-direction generators: 1F1B and ZB1P (zero-bubble 1F1B, "ZB-H1").
//
// Both generators place stage r on rank r and surround every compute op with the transfers it
// needs: the receive goes immediately before the op that consumes it and the send immediately
// after the op that produces it. Because sends never block, a rank can then only ever wait for
// data its own next compute op needs, so the schedule deadlocks only if the compute order itself
// has a cycle, which the 1F1B order does not.
#include <stdexcept>
#include <string>

#include "parallel/schedule.h"
#include "parallel/schedule_generators.h"

namespace baleine::parallel {

// --- names -------------------------------------------------------------------------------------

const char* schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::k1F1B: return "1f1b";
    case ScheduleKind::kZB1P: return "zb1p";
    case ScheduleKind::kDualPipe: return "dualpipe";
    case ScheduleKind::kDualPipeV: return "dualpipev";
  }
  return "?";
}

bool parse_schedule_name(const std::string& name, ScheduleKind* kind) {
  for (ScheduleKind k : {ScheduleKind::k1F1B, ScheduleKind::kZB1P, ScheduleKind::kDualPipe,
                         ScheduleKind::kDualPipeV}) {
    if (name == schedule_name(k)) {
      *kind = k;
      return true;
    }
  }
  return false;
}

// --- placement ---------------------------------------------------------------------------------

int Schedule::direction_of(int micro_batch) const {
  // DualPipe feeds the first half of the micro-batches from rank 0 and the rest from the last
  // rank; every other schedule has a single direction.
  if (kind != ScheduleKind::kDualPipe) return 0;
  return micro_batch < micro_batches / 2 ? 0 : 1;
}

int Schedule::rank_of(const StageRef& stage) const {
  // Read from stages_of_rank rather than recomputed from the kind, so that the placement has a
  // single source of truth: the generator that built the schedule.
  for (size_t r = 0; r < stages_of_rank.size(); ++r) {
    for (const StageRef& held : stages_of_rank[r]) {
      if (held == stage) return static_cast<int>(r);
    }
  }
  throw std::invalid_argument("schedule " + std::string(schedule_name(kind)) + ": no rank holds " +
                              "stage " + std::to_string(stage.stage) + " of direction " +
                              std::to_string(stage.direction) + " (" + std::to_string(stages) +
                              " stages per direction, " + std::to_string(directions) +
                              " direction(s))");
}

// --- describe ----------------------------------------------------------------------------------

std::string describe(const StageRef& s) {
  std::string text = "s" + std::to_string(s.stage);
  return s.direction == 0 ? text : "d" + std::to_string(s.direction) + ":" + text;
}

namespace {

std::string at(const StageRef& s, int micro_batch) {
  return describe(s) + " m" + std::to_string(micro_batch);
}

}  // namespace

std::string describe(const Op& op) {
  const std::string what = at(op.stage, op.micro_batch);
  const std::string peer = "r" + std::to_string(op.peer);
  switch (op.kind) {
    case OpKind::kForward: return "F " + what;
    case OpKind::kBackward: return "B " + what;
    case OpKind::kBackwardInput: return "BI " + what;
    case OpKind::kBackwardWeight: return "W " + what;
    case OpKind::kForwardBackward:
      return "F&B " + what + " | " + (op.backward_split ? "BI " : "B ") +
             at(op.stage2, op.micro_batch2);
    case OpKind::kSendActivation: return "send-act " + what + " -> " + peer;
    case OpKind::kRecvActivation: return "recv-act " + what + " <- " + peer;
    case OpKind::kSendGradient: return "send-grad " + what + " -> " + peer;
    case OpKind::kRecvGradient: return "recv-grad " + what + " <- " + peer;
  }
  return "?";
}

// --- dispatch ----------------------------------------------------------------------------------

namespace {

// Every generator checks this itself too, for callers that do not go through make_schedule.
void require_at_least_one_rank_and_micro_batch(const char* name, int ranks, int micro_batches) {
  if (ranks < 1) {
    throw std::invalid_argument(std::string(name) + " schedule: ranks = " + std::to_string(ranks) +
                                ", but a pipeline needs at least 1 rank");
  }
  if (micro_batches < 1) {
    throw std::invalid_argument(std::string(name) + " schedule: micro_batches = " +
                                std::to_string(micro_batches) +
                                ", but a step needs at least 1 micro-batch");
  }
}

}  // namespace

Schedule make_schedule(ScheduleKind kind, int ranks, int micro_batches) {
  // Shape rules common to every schedule; each generator adds its own (DualPipe's even ranks,
  // micro_batches >= 2·ranks, ...).
  require_at_least_one_rank_and_micro_batch(schedule_name(kind), ranks, micro_batches);
  switch (kind) {
    case ScheduleKind::k1F1B: return make_1f1b(ranks, micro_batches);
    case ScheduleKind::kZB1P: return make_zb1p(ranks, micro_batches);
    case ScheduleKind::kDualPipe: return make_dualpipe(ranks, micro_batches);
    case ScheduleKind::kDualPipeV: return make_dualpipev(ranks, micro_batches);
  }
  throw std::invalid_argument("unknown schedule kind " + std::to_string(static_cast<int>(kind)));
}

// --- 1F1B and ZB1P -----------------------------------------------------------------------------

namespace {

Schedule single_direction_skeleton(ScheduleKind kind, int ranks, int micro_batches) {
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.stages = ranks;
  s.directions = 1;
  s.micro_batches = micro_batches;
  s.stages_of_rank.resize(ranks);
  for (int r = 0; r < ranks; ++r) s.stages_of_rank[r] = {StageRef{0, r}};
  s.ops.resize(ranks);
  return s;
}

// Appends one rank's compute ops of a single-direction pipeline together with their transfers:
// stage s receives its input from stage s−1 and its output gradient from stage s+1.
class RankOps {
 public:
  RankOps(Schedule* schedule, int rank) : s_(*schedule), rank_(rank), ops_(schedule->ops[rank]) {}

  void forward(int micro_batch) {
    if (!first()) transfer(OpKind::kRecvActivation, micro_batch, rank_ - 1);
    compute(OpKind::kForward, micro_batch);
    if (!last()) transfer(OpKind::kSendActivation, micro_batch, rank_ + 1);
  }

  // kind: kBackward (full) or kBackwardInput; both produce the input gradient for stage s−1.
  void backward(OpKind kind, int micro_batch) {
    if (!last()) transfer(OpKind::kRecvGradient, micro_batch, rank_ + 1);
    compute(kind, micro_batch);
    if (!first()) transfer(OpKind::kSendGradient, micro_batch, rank_ - 1);
  }

  // W needs nothing from other ranks: its inputs (the layer input and the output gradient) were
  // kept on this rank by the BI.
  void weight(int micro_batch) { compute(OpKind::kBackwardWeight, micro_batch); }

 private:
  bool first() const { return rank_ == 0; }
  bool last() const { return rank_ == s_.stages - 1; }

  void compute(OpKind kind, int micro_batch) {
    Op op;
    op.kind = kind;
    op.stage = StageRef{0, rank_};
    op.micro_batch = micro_batch;
    ops_.push_back(op);
  }

  void transfer(OpKind kind, int micro_batch, int peer) {
    compute(kind, micro_batch);
    ops_.back().peer = peer;
  }

  const Schedule& s_;
  int rank_;
  std::vector<Op>& ops_;
};

// Forwards a rank runs before its first backward. Stage r must have sent the last stage enough
// work to keep it busy until the first output gradient comes back: PP − 1 − r micro-batches
// (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
// Megatron-LM", §2.2 — the PipeDream-Flush / 1F1B schedule). Fewer when there are fewer
// micro-batches.
int warmup_forwards(int ranks, int rank, int micro_batches) {
  const int wanted = ranks - 1 - rank;
  return wanted < micro_batches ? wanted : micro_batches;
}

}  // namespace

// 1F1B: warm-up forwards, then one forward and one full backward alternately, then the
// remaining backwards. Rank r holds at most min(PP − r, micro_batches) activations, and every
// rank idles (PP − 1)(F + B) per step: r·F before its first forward arrives, r·B after its
// last backward, and the rest in the middle (DualPipe README, bubble table).
Schedule make_1f1b(int ranks, int micro_batches) {
  require_at_least_one_rank_and_micro_batch("1f1b", ranks, micro_batches);
  Schedule s = single_direction_skeleton(ScheduleKind::k1F1B, ranks, micro_batches);
  for (int r = 0; r < ranks; ++r) {
    RankOps rank(&s, r);
    const int warmup = warmup_forwards(ranks, r, micro_batches);
    for (int m = 0; m < warmup; ++m) rank.forward(m);
    for (int m = warmup; m < micro_batches; ++m) {  // steady state: F of m, B of m − warmup
      rank.forward(m);
      rank.backward(OpKind::kBackward, m - warmup);
    }
    for (int m = micro_batches - warmup; m < micro_batches; ++m) {
      rank.backward(OpKind::kBackward, m);
    }
  }
  return s;
}

// ZB1P, the ZB-H1 schedule of Qi et al. 2023, "Zero Bubble Pipeline Parallelism" (arXiv
// 2401.10241, §2.1 "memory efficient schedule"): the 1F1B order with each backward split into
// BI (input gradient, on the critical path between ranks) and W (weight gradient, needed by no
// other rank). Rank r runs the same F/BI order as 1F1B but holds back r of its W's: in the
// cool-down it then waits r·(B − W) instead of r·B for the last input gradients, and fills that
// wait with the held-back W's. The held-back W's keep their layer inputs alive, so rank r holds
// at most (PP − r) + r = PP micro-batches: the memory of 1F1B's first rank, the bound the paper
// sets for ZB-H1.
//
// Bubble, per rank: (PP − 1)(F + B − 2W) in the README's notation (B = full backward), i.e.
// the paper's (p − 1)(T_F + T_B − T_W) with T_B = B − W. That holds while W <= B − W, the
// regime the paper analyses; with heavier W's the cool-down is all W and the bubble is
// (PP − 1)·F.
Schedule make_zb1p(int ranks, int micro_batches) {
  require_at_least_one_rank_and_micro_batch("zb1p", ranks, micro_batches);
  Schedule s = single_direction_skeleton(ScheduleKind::kZB1P, ranks, micro_batches);
  for (int r = 0; r < ranks; ++r) {
    RankOps rank(&s, r);
    const int warmup = warmup_forwards(ranks, r, micro_batches);
    const int held_back = r;  // W's this rank defers to its cool-down
    int next_weight = 0;      // oldest micro-batch whose W has not been emitted
    // After each BI, run the oldest pending W unless it is one of the `held_back` newest.
    auto backward_input_then_weight = [&](int m) {
      rank.backward(OpKind::kBackwardInput, m);
      if (m + 1 - next_weight > held_back) rank.weight(next_weight++);
    };
    for (int m = 0; m < warmup; ++m) rank.forward(m);
    for (int m = warmup; m < micro_batches; ++m) {
      rank.forward(m);
      backward_input_then_weight(m - warmup);
    }
    for (int m = micro_batches - warmup; m < micro_batches; ++m) backward_input_then_weight(m);
    while (next_weight < micro_batches) rank.weight(next_weight++);
  }
  return s;
}

}  // namespace baleine::parallel
