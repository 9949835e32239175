// DualPipe and DualPipeV schedule generators.
//
// Source of the algorithm: DeepSeek-V3 Technical Report (arXiv 2412.19437) §3.2.1 and
// DeepSeek's DualPipe repository (README table; dualpipe.py / dualpipev.py, organised as eight
// phases). This file re-derives the phase structure in its own terms:
//
// Both schedules give every rank two model chunks. Call "phase 0" the chunk a micro-batch
// reaches first on its way in from this rank's end of the pipeline and "phase 1" the other one:
//   DualPipe  (R ranks, H = R/2): on rank r the half-rank is h = min(r, R-1-r); phase 0 is the
//             direction fed from r's own end (direction 0 for r < H, direction 1 otherwise).
//   DualPipeV (D ranks, H = D): h = r; phase 0 is stage r (down the V), phase 1 stage 2D-1-r
//             (back up). The V's tip (stages D-1 → D) is local to rank D-1: no transfer.
// With K micro-batches per phase (DualPipe: half of them per direction; DualPipeV: all), every
// rank runs the same eight-phase program parameterised by (H, h, K):
//   1. 2(H-h-1) × F0                  fill: forwards of the near chunk only
//   2. (h+1) × {F0, F1}               both chunks forward, alternating
//   3. (H-h-1) × {BI1, W, F1}         first backwards; their W fills the slot at once
//   4. (K-2H+h+1) × {F0&B1, F1&B0}    steady state: every op overlaps a forward and a backward
//                                     (on the middle ranks the very first F0, B1 run apart)
//   5. (H-h-1) × {B1, F1&B0}          the near chunk has run out of forwards
//   6. (h+1) × {B1, B0}               drain; the last h+1 of these 2(h+1) backwards are split
//                                     into BI + deferred W
//   7. (H-h-1) × {W, BI0}             the deferred W's fill the cool-down bubbles
//   8. (h+1) × W                      flush the W queue (first in, first out)
// Each phase counts F and backward chunks in micro-batch order (pipelines are FIFO).
#include <algorithm>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel/schedule_generators.h"

namespace baleine::parallel {
namespace {

// One compute step of a rank's program, in local terms (phase 0 / 1, see the top comment).
struct LocalStep {
  enum Kind { kF, kB, kBI, kW, kFB } kind;
  int phase = 0;   // kF, kB, kBI: the chunk; kFB: the forward's chunk
  int phase2 = 0;  // kFB: the backward's chunk
};

// The eight-phase program of one rank: H = half_ranks, h = half_rank, K = chunks per phase.
std::vector<LocalStep> eight_phase_program(int H, int h, int K) {
  using S = LocalStep;
  const bool middle = (h == H - 1);
  std::vector<S> p;
  for (int i = 0; i < 2 * (H - h - 1); ++i) p.push_back({S::kF, 0, 0});        // 1
  for (int i = 0; i < h + 1; ++i) {                                             // 2
    p.push_back({S::kF, 0, 0});
    p.push_back({S::kF, 1, 0});
  }
  for (int i = 0; i < H - h - 1; ++i) {                                         // 3
    p.push_back({S::kBI, 1, 0});
    p.push_back({S::kW, 0, 0});
    p.push_back({S::kF, 1, 0});
  }
  for (int i = 0; i < K - 2 * H + h + 1; ++i) {                                 // 4
    if (i == 0 && middle) {
      // The published schedule runs the middle ranks' first F0 and B1 apart: the F0's output
      // then leaves for the next stage before the backward starts, which shortens the bubble.
      p.push_back({S::kF, 0, 0});
      p.push_back({S::kB, 1, 0});
    } else {
      p.push_back({S::kFB, 0, 1});
    }
    p.push_back({S::kFB, 1, 0});
  }
  for (int i = 0; i < H - h - 1; ++i) {                                         // 5
    p.push_back({S::kB, 1, 0});
    p.push_back({S::kFB, 1, 0});
  }
  for (int j = 0; j < 2 * (h + 1); ++j) {                                       // 6
    const int phase = (j % 2 == 0) ? 1 : 0;
    p.push_back({j >= h + 1 ? S::kBI : S::kB, phase, 0});
  }
  for (int i = 0; i < H - h - 1; ++i) {                                         // 7
    p.push_back({S::kW, 0, 0});
    p.push_back({S::kBI, 0, 0});
  }
  for (int i = 0; i < h + 1; ++i) p.push_back({S::kW, 0, 0});                   // 8
  return p;
}

// Where stages live and how micro-batches flow, for either schedule.
class Layout {
 public:
  Layout(ScheduleKind kind, int ranks, int micro_batches)
      : kind_(kind), ranks_(ranks), micro_batches_(micro_batches) {}

  bool dualpipe() const { return kind_ == ScheduleKind::kDualPipe; }
  int half_ranks() const { return dualpipe() ? ranks_ / 2 : ranks_; }
  int half_rank(int r) const { return dualpipe() ? std::min(r, ranks_ - 1 - r) : r; }
  int stages() const { return dualpipe() ? ranks_ : 2 * ranks_; }
  int chunks_per_phase() const { return dualpipe() ? micro_batches_ / 2 : micro_batches_; }

  StageRef stage_of_phase(int r, int phase) const {
    if (dualpipe()) {
      const int direction = phase ^ (r >= ranks_ / 2 ? 1 : 0);
      return {direction, direction == 0 ? r : ranks_ - 1 - r};
    }
    return {0, phase == 0 ? r : 2 * ranks_ - 1 - r};
  }

  int rank_of(StageRef s) const {
    if (dualpipe()) return s.direction == 0 ? s.stage : ranks_ - 1 - s.stage;
    return s.stage < ranks_ ? s.stage : 2 * ranks_ - 1 - s.stage;
  }

  // The rank running the next / previous stage in the same direction; -1 past either end.
  int next_rank(StageRef s) const {
    return s.stage + 1 < stages() ? rank_of({s.direction, s.stage + 1}) : -1;
  }
  int prev_rank(StageRef s) const {
    return s.stage > 0 ? rank_of({s.direction, s.stage - 1}) : -1;
  }

  // The k-th micro-batch of a direction (DualPipe: the first half go in direction 0).
  int micro_batch(int direction, int k) const {
    return direction == 0 ? k : micro_batches_ / 2 + k;
  }

 private:
  ScheduleKind kind_;
  int ranks_;
  int micro_batches_;
};

// Turns one rank's local program into ops: names the stage and micro-batch of every compute op,
// resolves W's from the FIFO of deferred weight gradients, and adds the transfers. A receive is
// placed right before the op that consumes it and a send right after the op that produces it;
// a transfer whose peer is the rank itself (DualPipeV's tip) is a local hand-over, not an op.
class RankEmitter {
 public:
  RankEmitter(const Layout& layout, int rank, std::vector<Op>* out)
      : layout_(layout), rank_(rank), out_(out) {}

  void emit(const LocalStep& step) {
    switch (step.kind) {
      case LocalStep::kF: {
        const auto [s, m] = next_forward(step.phase);
        recv(OpKind::kRecvActivation, s, m, layout_.prev_rank(s));
        compute(OpKind::kForward, s, m);
        send(OpKind::kSendActivation, s, m, layout_.next_rank(s));
        break;
      }
      case LocalStep::kB:
      case LocalStep::kBI: {
        const auto [s, m] = next_backward(step.phase);
        const bool split = step.kind == LocalStep::kBI;
        recv(OpKind::kRecvGradient, s, m, layout_.next_rank(s));
        compute(split ? OpKind::kBackwardInput : OpKind::kBackward, s, m);
        if (split) deferred_weights_.push_back({s, m});
        send(OpKind::kSendGradient, s, m, layout_.prev_rank(s));
        break;
      }
      case LocalStep::kW: {
        if (deferred_weights_.empty()) throw std::logic_error("DualPipe: W with no pending BI");
        const auto [s, m] = deferred_weights_.front();
        deferred_weights_.pop_front();
        compute(OpKind::kBackwardWeight, s, m);
        break;
      }
      case LocalStep::kFB: {
        const auto [fs, fm] = next_forward(step.phase);
        const auto [bs, bm] = next_backward(step.phase2);
        recv(OpKind::kRecvActivation, fs, fm, layout_.prev_rank(fs));
        recv(OpKind::kRecvGradient, bs, bm, layout_.next_rank(bs));
        Op op;
        op.kind = OpKind::kForwardBackward;
        op.stage = fs;
        op.micro_batch = fm;
        op.stage2 = bs;
        op.micro_batch2 = bm;
        out_->push_back(op);
        send(OpKind::kSendActivation, fs, fm, layout_.next_rank(fs));
        send(OpKind::kSendGradient, bs, bm, layout_.prev_rank(bs));
        break;
      }
    }
  }

  bool weights_pending() const { return !deferred_weights_.empty(); }

 private:
  std::pair<StageRef, int> next_forward(int phase) {
    const StageRef s = layout_.stage_of_phase(rank_, phase);
    return {s, layout_.micro_batch(s.direction, forwards_[phase]++)};
  }
  std::pair<StageRef, int> next_backward(int phase) {
    const StageRef s = layout_.stage_of_phase(rank_, phase);
    return {s, layout_.micro_batch(s.direction, backwards_[phase]++)};
  }

  void compute(OpKind kind, StageRef s, int m) {
    Op op;
    op.kind = kind;
    op.stage = s;
    op.micro_batch = m;
    out_->push_back(op);
  }
  void transfer(OpKind kind, StageRef s, int m, int peer) {
    if (peer < 0 || peer == rank_) return;
    Op op;
    op.kind = kind;
    op.stage = s;
    op.micro_batch = m;
    op.peer = peer;
    out_->push_back(op);
  }
  void recv(OpKind kind, StageRef s, int m, int peer) { transfer(kind, s, m, peer); }
  void send(OpKind kind, StageRef s, int m, int peer) { transfer(kind, s, m, peer); }

  const Layout& layout_;
  int rank_;
  std::vector<Op>* out_;
  int forwards_[2] = {0, 0};
  int backwards_[2] = {0, 0};
  std::deque<std::pair<StageRef, int>> deferred_weights_;
};

Schedule build(ScheduleKind kind, int ranks, int micro_batches) {
  const Layout layout(kind, ranks, micro_batches);
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.stages = layout.stages();
  s.directions = layout.dualpipe() ? 2 : 1;
  s.micro_batches = micro_batches;
  s.stages_of_rank.resize(ranks);
  s.ops.resize(ranks);
  for (int r = 0; r < ranks; ++r) {
    s.stages_of_rank[r] = {layout.stage_of_phase(r, 0), layout.stage_of_phase(r, 1)};
    RankEmitter emitter(layout, r, &s.ops[r]);
    const auto program =
        eight_phase_program(layout.half_ranks(), layout.half_rank(r), layout.chunks_per_phase());
    for (const LocalStep& step : program) emitter.emit(step);
    // dualpipe.py ends by asserting its weight-gradient queue is empty; so do we.
    if (emitter.weights_pending()) throw std::logic_error("DualPipe: a BI was left without its W");
  }
  return s;
}

std::string str(int v) { return std::to_string(v); }

}  // namespace

// Requirements as asserted by DeepSeek's dualpipe.py: ranks even, micro-batches even and at
// least 2·ranks, i.e. each direction gets at least `ranks` micro-batches (phase 4 runs
// K − 2H + h + 1 ≥ 1 times on the outermost ranks, h = 0).
Schedule make_dualpipe(int ranks, int micro_batches) {
  if (ranks < 2 || ranks % 2 != 0)
    throw std::invalid_argument("DualPipe needs an even number of pipeline ranks >= 2 (got " +
                                str(ranks) + "): rank r holds stage r of one direction and stage "
                                "ranks-1-r of the other, mirrored about the middle");
  if (micro_batches % 2 != 0 || micro_batches < 2 * ranks)
    throw std::invalid_argument(
        "DualPipe needs an even number of micro-batches >= 2·ranks = 2·" + str(ranks) + " = " +
        str(2 * ranks) + " (got " + str(micro_batches) + "): each direction gets half of them, " +
        "and micro_batches/2 must be >= ranks = " + str(ranks) + " to fill its pipeline");
  return build(ScheduleKind::kDualPipe, ranks, micro_batches);
}

// Requirement as asserted by dualpipev.py: micro-batches >= 2·ranks (the V has 2·ranks stages,
// and phase 4 runs K − 2D + r + 1 ≥ 1 times on rank 0).
Schedule make_dualpipev(int ranks, int micro_batches) {
  if (ranks < 1)
    throw std::invalid_argument("DualPipeV needs at least 1 pipeline rank (got " + str(ranks) +
                                ")");
  if (micro_batches < 2 * ranks)
    throw std::invalid_argument(
        "DualPipeV needs micro-batches >= 2·ranks = 2·" + str(ranks) + " = " + str(2 * ranks) +
        " (got " + str(micro_batches) + "): the V has 2·ranks = " + str(2 * ranks) +
        " stages and each must be filled before the steady phase");
  return build(ScheduleKind::kDualPipeV, ranks, micro_batches);
}

}  // namespace baleine::parallel
