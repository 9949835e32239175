// simulate(): runs a Schedule's per-rank op lists as a discrete-event program with the costs
// given, and refuses schedules that could not run on real ranks.
//
// Why a simulator at all: a schedule is data (issue 4), so everything that would otherwise show
// up as a hang or a wrong gradient on a cluster — a recv nobody sends, two ranks each waiting for
// the other, a micro-batch whose W never runs — is found here first, with the rank and the op
// named. The same run measures what the DualPipe README's table promises (bubble, peak live
// activations), so tests can hold the generators to the published formulas.
//
// Execution model (the contract in schedule.h):
//   - a rank runs its ops strictly in order; compute ops take their cost, transfers none;
//   - a send never blocks; its data becomes available at send time + costs.transfer;
//   - a recv completes at max(rank free, data available);
//   - a compute op's inputs come from earlier ops of its own rank (a recv, or at a turn of the
//     DualPipeV "V" the neighbouring stage's compute), so a compute op never waits for time —
//     only, forever, for an op that comes later or never: that is reported as a deadlock.
// Every op's time depends only on its rank's previous op and on the matching send's time, so
// the result does not depend on the order in which ranks are advanced.
#include <algorithm>
#include <map>
#include <sstream>
#include <tuple>

#include "parallel/schedule.h"

namespace baleine::parallel {
namespace {

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

// Collects what is wrong; keeps the first few messages and counts the rest.
class Problems {
 public:
  void add(const std::string& message) {
    if (count_++ < kShown) messages_.push_back(message);
  }
  bool any() const { return count_ > 0; }
  std::string text(const std::string& headline) const {
    std::string s = headline;
    for (const auto& m : messages_) s += "\n  " + m;
    if (count_ > kShown) s += cat("\n  ... and ", count_ - kShown, " more");
    return s;
  }

 private:
  static constexpr size_t kShown = 12;
  std::vector<std::string> messages_;
  size_t count_ = 0;
};

bool is_send(OpKind k) { return k == OpKind::kSendActivation || k == OpKind::kSendGradient; }
bool is_recv(OpKind k) { return k == OpKind::kRecvActivation || k == OpKind::kRecvGradient; }
bool is_transfer(OpKind k) { return is_send(k) || is_recv(k); }

// The stage at the other end of a transfer. Activations flow to stage + 1 and gradients to
// stage − 1; a send is labelled with the stage that produced the data, a recv with the stage
// that consumes it (schedule.h).
int neighbour_stage(const Op& op) {
  const bool downstream = op.kind == OpKind::kSendActivation || op.kind == OpKind::kRecvGradient;
  return op.stage.stage + (downstream ? 1 : -1);
}

// One point-to-point message, named by the stage that consumes it, so that a send (producer
// label) and its recv (consumer label) meet on one key.
using TransferKey = std::tuple<int, int, bool, int, int, int>;  // from, to, gradient?, dir,
                                                                // consumer stage, micro-batch
TransferKey transfer_key(int rank, const Op& op) {
  const bool gradient = op.kind == OpKind::kSendGradient || op.kind == OpKind::kRecvGradient;
  if (is_send(op.kind)) {
    return {rank, op.peer, gradient, op.stage.direction, neighbour_stage(op), op.micro_batch};
  }
  return {op.peer, rank, gradient, op.stage.direction, op.stage.stage, op.micro_batch};
}

std::string where(int rank, size_t index, const Op& op) {
  return cat("rank ", rank, " op #", index, " '", describe(op), "'");
}

// describe() of a compute op built on the spot, so messages name things the way listings do.
std::string label(OpKind kind, const StageRef& st, int micro_batch) {
  Op op;
  op.kind = kind, op.stage = st, op.micro_batch = micro_batch;
  return describe(op);
}
// "s3 m1" (or "d1:s3 m1"): the pair alone.
std::string pair_label(const StageRef& st, int m) {
  return label(OpKind::kForward, st, m).substr(2);
}

// Which rank holds each stage, and a dense index for (stage, micro-batch) pairs.
class Layout {
 public:
  explicit Layout(const Schedule& s) : s_(s), holder_(s.directions * s.stages, -1) {}
  bool valid(const StageRef& st) const {
    return st.direction >= 0 && st.direction < s_.directions && st.stage >= 0 &&
           st.stage < s_.stages;
  }
  bool valid(const StageRef& st, int m) const {
    return valid(st) && m >= 0 && m < s_.micro_batches;
  }
  int& holder(const StageRef& st) { return holder_[st.direction * s_.stages + st.stage]; }
  int holder(const StageRef& st) const { return holder_[st.direction * s_.stages + st.stage]; }
  size_t index(const StageRef& st, int m) const {
    return static_cast<size_t>((st.direction * s_.stages + st.stage) * s_.micro_batches + m);
  }
  size_t pairs() const { return holder_.size() * static_cast<size_t>(s_.micro_batches); }

 private:
  const Schedule& s_;
  std::vector<int> holder_;
};

// --- static checks ---------------------------------------------------------------------------

std::string check_shape(const Schedule& s, const Costs& c) {
  std::string e;
  const size_t ranks = static_cast<size_t>(std::max(s.ranks, 0));
  if (s.ranks < 1) e += cat("ranks = ", s.ranks, " (need at least 1); ");
  if (s.stages < 1) e += cat("stages = ", s.stages, " (need at least 1); ");
  if (s.directions != 1 && s.directions != 2)
    e += cat("directions = ", s.directions, " (1 or 2); ");
  if (s.micro_batches < 1) e += cat("micro_batches = ", s.micro_batches, " (need at least 1); ");
  if (s.ops.size() != ranks)
    e += cat("ops has ", s.ops.size(), " rank lists for ", ranks, " ranks; ");
  if (s.stages_of_rank.size() != ranks) {
    e += cat("stages_of_rank has ", s.stages_of_rank.size(), " entries for ", ranks, " ranks; ");
  }
  if (c.F < 0 || c.B < 0 || c.W < 0 || c.FB < 0 || c.transfer < 0) e += "a cost is negative; ";
  if (c.W > c.B) e += cat("costs.W = ", c.W, " exceeds the full backward costs.B = ", c.B, "; ");
  if (c.W > c.FB) e += cat("costs.W = ", c.W, " exceeds costs.FB = ", c.FB, "; ");
  if (!e.empty()) e.resize(e.size() - 2);
  return e;
}

// Every stage is held by exactly one rank.
void check_placement(const Schedule& s, Layout& layout, Problems& problems) {
  for (int r = 0; r < s.ranks; ++r) {
    for (const StageRef& st : s.stages_of_rank[r]) {
      if (!layout.valid(st)) {
        problems.add(
            cat("rank ", r, " holds a stage outside the schedule (", pair_label(st, 0), ")"));
      } else if (layout.holder(st) >= 0) {
        problems.add(cat("ranks ", layout.holder(st), " and ", r, " both hold the stage of '",
                         pair_label(st, 0), "'"));
      } else {
        layout.holder(st) = r;
      }
    }
  }
  for (int d = 0; d < s.directions; ++d) {
    for (int st = 0; st < s.stages; ++st) {
      if (layout.holder(StageRef{d, st}) < 0) {
        problems.add(cat("no rank holds direction ", d, " stage ", st));
      }
    }
  }
}

// One (stage, micro-batch) half of an op: a stage this rank holds, a micro-batch that exists and
// runs in that stage's direction.
void check_half(const Schedule& s, const Layout& layout, int rank, const StageRef& st, int m,
                const std::string& at, Problems& problems) {
  if (!layout.valid(st)) {
    problems.add(at + ": no such stage");
  } else if (layout.holder(st) != rank) {
    problems.add(cat(at, ": rank ", rank, " does not hold this stage (rank ", layout.holder(st),
                     " does)"));
  } else if (m < 0 || m >= s.micro_batches) {
    problems.add(cat(at, ": micro-batch outside 0..", s.micro_batches - 1));
  } else if (s.direction_of(m) != st.direction) {
    problems.add(cat(at, ": micro-batch ", m, " runs in direction ", s.direction_of(m)));
  }
}

void check_ops(const Schedule& s, const Layout& layout, Problems& problems) {
  for (int r = 0; r < s.ranks; ++r) {
    for (size_t i = 0; i < s.ops[r].size(); ++i) {
      const Op& op = s.ops[r][i];
      const std::string at = where(r, i, op);
      check_half(s, layout, r, op.stage, op.micro_batch, at, problems);
      if (op.kind == OpKind::kForwardBackward) {
        check_half(s, layout, r, op.stage2, op.micro_batch2, at, problems);
      }
      if (!is_transfer(op.kind) || !layout.valid(op.stage)) continue;
      const StageRef other{op.stage.direction, neighbour_stage(op)};
      if (!layout.valid(other)) {
        problems.add(cat(at, ": there is no stage ", other.stage, " to exchange with"));
      } else if (op.peer == r || layout.holder(other) != op.peer) {
        problems.add(cat(at, ": peer should be rank ", layout.holder(other), ", which holds stage ",
                         other.stage,
                         layout.holder(other) == r ? " (this rank: no transfer)" : ""));
      }
    }
  }
}

// Every send meets exactly one recv with the same peers, kind, stage and micro-batch.
void check_transfers(const Schedule& s, Problems& problems) {
  std::map<TransferKey, std::pair<std::vector<std::string>, std::vector<std::string>>> ends;
  for (int r = 0; r < s.ranks; ++r) {
    for (size_t i = 0; i < s.ops[r].size(); ++i) {
      const Op& op = s.ops[r][i];
      if (!is_transfer(op.kind)) continue;
      auto& [sends, recvs] = ends[transfer_key(r, op)];
      (is_send(op.kind) ? sends : recvs).push_back(where(r, i, op));
    }
  }
  for (const auto& [key, e] : ends) {
    const auto& [sends, recvs] = e;
    if (sends.size() == 1 && recvs.size() == 1) continue;
    if (recvs.empty()) {
      problems.add(
          cat(sends[0], ": unmatched send, rank ", std::get<1>(key), " never receives it"));
    } else if (sends.empty()) {
      problems.add(cat(recvs[0], ": unmatched recv, rank ", std::get<0>(key), " never sends it"));
    } else {
      problems.add(cat(sends.size() > 1 ? sends[1] : recvs[1], ": transferred ",
                       std::max(sends.size(), recvs.size()),
                       " times; each message is sent and received exactly once"));
    }
  }
}

// Every (stage, micro-batch) gets exactly one F and exactly one backward: a full B, a BI
// followed by its W, or the backward half of an F&B (followed by a W when that half is split).
void check_completeness(const Schedule& s, const Layout& layout, Problems& problems) {
  struct Count { int forward = 0, full = 0, input_only = 0, weight = 0; };
  std::vector<Count> counts(layout.pairs());
  for (int r = 0; r < s.ranks; ++r) {
    for (const Op& op : s.ops[r]) {
      if (is_transfer(op.kind) || !layout.valid(op.stage, op.micro_batch)) continue;
      Count& c = counts[layout.index(op.stage, op.micro_batch)];
      switch (op.kind) {
        case OpKind::kForward: ++c.forward; break;
        case OpKind::kBackward: ++c.full; break;
        case OpKind::kBackwardInput: ++c.input_only; break;
        case OpKind::kBackwardWeight: ++c.weight; break;
        case OpKind::kForwardBackward:
          ++c.forward;
          if (layout.valid(op.stage2, op.micro_batch2)) {
            Count& b = counts[layout.index(op.stage2, op.micro_batch2)];
            ++(op.backward_split ? b.input_only : b.full);
          }
          break;
        default: break;
      }
    }
  }
  for (int d = 0; d < s.directions; ++d) {
    for (int st = 0; st < s.stages; ++st) {
      const StageRef ref{d, st};
      for (int m = 0; m < s.micro_batches; ++m) {
        if (s.direction_of(m) != d) continue;
        const Count& c = counts[layout.index(ref, m)];
        const std::string pair = cat(pair_label(ref, m), " (rank ", layout.holder(ref), "): ");
        if (c.forward != 1) problems.add(cat(pair, c.forward, " forwards, expected 1"));
        if (c.full + c.input_only != 1) {
          problems.add(cat(pair, c.full + c.input_only, " backwards (B, BI or F&B), expected 1"));
        } else if (c.input_only == 1 && c.weight != 1) {
          problems.add(cat(pair, "split backward with ", c.weight, " W ops, expected 1"));
        } else if (c.full == 1 && c.weight != 0) {
          problems.add(cat(pair, "a full backward includes W, yet ", c.weight, " W ops follow"));
        }
      }
    }
  }
}

// --- execution -------------------------------------------------------------------------------

class Runner {
 public:
  Runner(const Schedule& s, const Costs& costs, const Layout& layout)
      : s_(s), costs_(costs), layout_(layout), pairs_(layout.pairs()), next_(s.ranks),
        time_(s.ranks), live_(s.ranks) {
    result_.busy.assign(s.ranks, 0.0);
    result_.peak_activations.assign(s.ranks, 0);
    result_.timeline.resize(s.ranks);
  }

  // Runs `rank`'s ops until one cannot start; returns whether any ran.
  bool advance(int rank) {
    const size_t first = next_[rank];
    while (!finished(rank) && waiting_for(rank).empty()) {
      run(rank, s_.ops[rank][next_[rank]]);
      ++next_[rank];
    }
    return next_[rank] != first;
  }
  bool finished(int rank) const { return next_[rank] == s_.ops[rank].size(); }
  size_t next_op(int rank) const { return next_[rank]; }

  // What `rank`'s next op waits for; empty when it can run.
  std::string waiting_for(int rank) const {
    const Op& op = s_.ops[rank][next_[rank]];
    const StageRef& st = op.stage;
    const int m = op.micro_batch;
    switch (op.kind) {
      case OpKind::kForward: return forward_input(rank, st, m);
      case OpKind::kBackward:
      case OpKind::kBackwardInput: return backward_input(rank, st, m);
      case OpKind::kBackwardWeight:
        if (at(st, m).backward) return "";
        return "its BI '" + label(OpKind::kBackwardInput, st, m) + "'";
      case OpKind::kForwardBackward: {
        const std::string f = forward_input(rank, st, m);
        return f.empty() ? backward_input(rank, op.stage2, op.micro_batch2) : f;
      }
      case OpKind::kSendActivation:
        if (at(st, m).forward) return "";
        return "'" + label(OpKind::kForward, st, m) + "' to run first";
      case OpKind::kSendGradient:
        if (at(st, m).backward) return "";
        return "the backward of " + pair_label(st, m) + " to run first";
      case OpKind::kRecvActivation:
      case OpKind::kRecvGradient:
        if (sent_.count(transfer_key(rank, op))) return "";
        return cat("the matching send from rank ", op.peer);
    }
    return "";
  }

  SimulationResult finish() {
    for (int r = 0; r < s_.ranks; ++r) result_.makespan = std::max(result_.makespan, time_[r]);
    for (int r = 0; r < s_.ranks; ++r) result_.bubble.push_back(result_.makespan - result_.busy[r]);
    return result_;
  }

 private:
  // What has happened to one (stage, micro-batch) on the rank that holds its stage.
  struct PairState {
    bool forward = false, backward = false;   // computed (backward: B, BI or in an F&B)
    bool activation = false, gradient = false;  // received
  };
  PairState& at(const StageRef& st, int m) { return pairs_[layout_.index(st, m)]; }
  const PairState& at(const StageRef& st, int m) const { return pairs_[layout_.index(st, m)]; }

  // A forward's input: nothing on the first stage, the previous stage's forward when this rank
  // holds it too (the turn of the V), else an earlier recv.
  std::string forward_input(int rank, const StageRef& st, int m) const {
    if (st.stage == 0) return "";
    const StageRef previous{st.direction, st.stage - 1};
    if (layout_.holder(previous) == rank) {
      if (at(previous, m).forward) return "";
      return "'" + label(OpKind::kForward, previous, m) + "' on this rank first";
    }
    if (at(st, m).activation) return "";
    return cat("its input: no recv-act from rank ", layout_.holder(previous), " before it");
  }

  // A backward needs its own forward, and its output gradient: the loss on the last stage, the
  // next stage's backward when this rank holds it too, else an earlier recv.
  std::string backward_input(int rank, const StageRef& st, int m) const {
    if (!at(st, m).forward) return "its forward '" + label(OpKind::kForward, st, m) + "'";
    if (st.stage == s_.stages - 1) return "";
    const StageRef next{st.direction, st.stage + 1};
    if (layout_.holder(next) == rank) {
      if (at(next, m).backward) return "";
      return "the backward of " + pair_label(next, m) + " on this rank first";
    }
    if (at(st, m).gradient) return "";
    return cat("its output gradient: no recv-grad from rank ", layout_.holder(next), " before it");
  }

  void compute(int rank, double cost) {
    const double start = time_[rank];
    result_.timeline[rank].push_back(
        TimelineEntry{static_cast<int>(next_[rank]), start, start + cost});
    result_.busy[rank] += cost;
    time_[rank] = start + cost;
  }

  // A forward's activation is live from the forward until its backward (B or BI) completes. An
  // F&B holds both micro-batches' activations while it runs, so its forward counts first.
  void forward(int rank, const StageRef& st, int m) {
    at(st, m).forward = true;
    result_.peak_activations[rank] = std::max(result_.peak_activations[rank], ++live_[rank]);
  }
  void backward(int rank, const StageRef& st, int m) {
    at(st, m).backward = true;
    --live_[rank];
  }

  void run(int rank, const Op& op) {
    const StageRef& st = op.stage;
    const int m = op.micro_batch;
    switch (op.kind) {
      case OpKind::kForward: forward(rank, st, m), compute(rank, costs_.F); break;
      case OpKind::kBackward: compute(rank, costs_.B), backward(rank, st, m); break;
      case OpKind::kBackwardInput: compute(rank, costs_.B - costs_.W), backward(rank, st, m); break;
      case OpKind::kBackwardWeight: compute(rank, costs_.W); break;
      case OpKind::kForwardBackward:
        forward(rank, st, m);
        compute(rank, op.backward_split ? costs_.FB - costs_.W : costs_.FB);
        backward(rank, op.stage2, op.micro_batch2);
        break;
      case OpKind::kSendActivation:
      case OpKind::kSendGradient:
        sent_[transfer_key(rank, op)] = time_[rank] + costs_.transfer;
        break;
      case OpKind::kRecvActivation:
      case OpKind::kRecvGradient:
        time_[rank] = std::max(time_[rank], sent_.at(transfer_key(rank, op)));
        (op.kind == OpKind::kRecvActivation ? at(st, m).activation : at(st, m).gradient) = true;
        break;
    }
  }

  const Schedule& s_;
  const Costs& costs_;
  const Layout& layout_;
  std::vector<PairState> pairs_;
  std::map<TransferKey, double> sent_;  // message → time it is available
  std::vector<size_t> next_;            // per rank: next op
  std::vector<double> time_;            // per rank: free from
  std::vector<int> live_;               // per rank: activations held
  SimulationResult result_;
};

}  // namespace

SimulationResult simulate(const Schedule& schedule, const Costs& costs) {
  SimulationResult result;
  const std::string shape = check_shape(schedule, costs);
  if (!shape.empty()) {
    result.error = "malformed schedule: " + shape;
    return result;
  }
  Layout layout(schedule);
  Problems problems;
  check_placement(schedule, layout, problems);
  if (problems.any()) {
    result.error = problems.text("schedule rejected, stage placement:");
    return result;
  }
  check_ops(schedule, layout, problems);
  check_transfers(schedule, problems);
  check_completeness(schedule, layout, problems);
  if (problems.any()) {
    result.error = problems.text("schedule rejected:");
    return result;
  }

  Runner runner(schedule, costs, layout);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < schedule.ranks; ++r) progress = runner.advance(r) || progress;
  }
  Problems blocked;
  for (int r = 0; r < schedule.ranks; ++r) {
    if (runner.finished(r)) continue;
    const size_t next = runner.next_op(r);
    blocked.add(where(r, next, schedule.ops[r][next]) + " waits for " + runner.waiting_for(r));
  }
  result = runner.finish();
  if (blocked.any()) {
    result.error = blocked.text("deadlock: no rank can make progress");
    return result;
  }
  result.ok = true;
  return result;
}

}  // namespace baleine::parallel
