// Runs one rank's pipeline op list on real boundary tensors (see pipeline_executor.h).
//
// Every tensor crossing a stage boundary is identified by a BufferKey: activation or gradient,
// the stage that CONSUMES it, and the micro-batch. The producer writes it into a pooled buffer
// filed under that key; the consumer takes it from there, whether it arrived through a receive
// or was left by a stage on the same rank (DualPipeV's tip). Because both ends agree on the key,
// a local hand-off needs no special case, and the key also gives the transfer its MPI tag.
//
// Why all receives are posted before the first compute op: a rank then never has to decide when
// to post one, a message can land while the rank computes, and since sends never block either
// (isend, completed at the end of the step) the only waits are for data a compute op needs.
// That is the execution model simulate() (schedule_simulator.cpp) checks schedules under, so a
// schedule it accepts cannot deadlock here. What a step holds at once is therefore bounded by
// its transfers, not by the schedule's live activations: every receive buffer from the start,
// and every sent buffer until the end (Request has wait() only, no test()).
#include "parallel/pipeline_executor.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace baleine::parallel {
namespace {

// MPI guarantees MPI_TAG_UB >= 32767 (MPI 4.0 §8.1.2); larger tags are not portable.
constexpr int64_t kLargestPortableTag = 32767;

enum Boundary { kActivation = 0, kGradient = 1 };

struct BufferKey {
  Boundary boundary = kActivation;
  StageRef consumer;
  int micro_batch = 0;
};

// "activation for s2 m3", "gradient for d1:s0 m5": the consumer, as describe() writes stages.
std::string key_text(const BufferKey& key) {
  return std::string(key.boundary == kActivation ? "activation" : "gradient") + " for " +
         describe(key.consumer) + " m" + std::to_string(key.micro_batch);
}

bool is_receive(OpKind kind) {
  return kind == OpKind::kRecvActivation || kind == OpKind::kRecvGradient;
}
bool is_transfer(OpKind kind) {
  return is_receive(kind) || kind == OpKind::kSendActivation || kind == OpKind::kSendGradient;
}

// What a transfer op moves. A send is labelled with the PRODUCING stage, a receive with the
// CONSUMING one (schedule.h); the key always names the consumer.
BufferKey key_of_transfer(const Op& op) {
  const StageRef s = op.stage;
  switch (op.kind) {
    case OpKind::kSendActivation: return {kActivation, {s.direction, s.stage + 1}, op.micro_batch};
    case OpKind::kRecvActivation: return {kActivation, s, op.micro_batch};
    case OpKind::kSendGradient: return {kGradient, {s.direction, s.stage - 1}, op.micro_batch};
    default: return {kGradient, s, op.micro_batch};  // kRecvGradient
  }
}

// A transfer crosses the boundary between stages b and b+1 of one direction; the tag numbers
// (boundary kind, direction, b, micro-batch) densely, so it is unique within a step.
int64_t tag_of(const Schedule& s, const BufferKey& key) {
  const int crossing = key.boundary == kActivation ? key.consumer.stage - 1 : key.consumer.stage;
  return ((int64_t{key.boundary} * s.directions + key.consumer.direction) * (s.stages - 1) +
          crossing) * s.micro_batches + key.micro_batch;
}

std::string shape_text(const Schedule& s) {
  return std::string(schedule_name(s.kind)) + " with " + std::to_string(s.ranks) +
         " rank(s), " + std::to_string(s.stages) + " stage(s) per direction, " +
         std::to_string(s.directions) + " direction(s) and " + std::to_string(s.micro_batches) +
         " micro-batch(es)";
}

bool stage_in_range(const Schedule& s, const StageRef& st) {
  return st.direction >= 0 && st.direction < s.directions && st.stage >= 0 &&
         st.stage < s.stages;
}

// Rejects ops naming stages or micro-batches outside the shape (and transfers off either end),
// so run() can index its tables without checks.
void check_ops_in_range(const Schedule& s) {
  for (int r = 0; r < s.ranks; ++r) {
    for (const Op& op : s.ops[r]) {
      bool ok = stage_in_range(s, op.stage) && op.micro_batch >= 0 &&
                op.micro_batch < s.micro_batches;
      if (op.kind == OpKind::kForwardBackward) {
        ok = ok && stage_in_range(s, op.stage2) && op.micro_batch2 >= 0 &&
             op.micro_batch2 < s.micro_batches;
      }
      if (ok && is_transfer(op.kind)) {
        const BufferKey key = key_of_transfer(op);
        ok = stage_in_range(s, key.consumer) && op.peer >= 0 && op.peer < s.ranks &&
             (key.boundary == kActivation ? key.consumer.stage >= 1
                                          : key.consumer.stage <= s.stages - 2);
      }
      if (!ok) {
        throw std::invalid_argument("pipeline schedule " + shape_text(s) + ": op '" +
                                    describe(op) + "' of rank " + std::to_string(r) +
                                    " names a stage, micro-batch or peer outside the shape");
      }
    }
  }
}

void check_tags_fit(const Schedule& s) {
  if (s.ranks < 2 || s.stages < 2) return;  // nothing is ever sent
  const int64_t tags_per_micro_batch = 2 * int64_t{s.directions} * (s.stages - 1);
  const int64_t largest = tags_per_micro_batch * s.micro_batches - 1;
  if (largest <= kLargestPortableTag) return;
  throw std::invalid_argument(
      "pipeline schedule " + shape_text(s) + " needs point-to-point tags up to 2·" +
      std::to_string(s.directions) + "·(" + std::to_string(s.stages) + "−1)·" +
      std::to_string(s.micro_batches) + "−1 = " + std::to_string(largest) +
      ", above the largest tag MPI guarantees (" + std::to_string(kLargestPortableTag) +
      "); use at most " + std::to_string((kLargestPortableTag + 1) / tags_per_micro_batch) +
      " micro-batches per step (raise train.micro_batch or lower train.global_batch)");
}

// Boundary buffers, reused across steps: after the first step the same sequence of acquires
// and releases never needs more buffers than that step did.
class BufferPool {
 public:
  // Makes every buffer free again (also after a step that threw half-way).
  void start_step(int64_t elements) {
    if (elements != elements_) {
      buffers_.clear();
      elements_ = elements;
    }
    free_.clear();
    for (int id = static_cast<int>(buffers_.size()) - 1; id >= 0; --id) free_.push_back(id);
  }
  int acquire() {
    if (free_.empty()) {
      buffers_.emplace_back(static_cast<size_t>(elements_));
      return static_cast<int>(buffers_.size()) - 1;
    }
    const int id = free_.back();
    free_.pop_back();
    return id;
  }
  void release(int id) { free_.push_back(id); }
  float* data(int id) { return buffers_[id].data(); }
  int64_t elements() const { return elements_; }

 private:
  int64_t elements_ = -1;
  std::vector<std::vector<float>> buffers_;
  std::vector<int> free_;  // a stack: the most recently released buffer is reused first
};

// A boundary tensor this rank holds or is receiving.
struct Slot {
  int buffer = -1;                   // -1: nothing under this key
  std::unique_ptr<Request> receive;  // set while the receive may still be in flight
  int origin_op = -1;                // the op that posted the receive or produced the tensor
};

struct InFlightSend {
  int buffer = -1;
  std::unique_ptr<Request> request;
};

}  // namespace

// The step machinery of one rank: the pool, the tensors held or in flight, and the StageWork
// calls. Lives across run() calls so the pool's buffers are reused.
struct PipelineExecutor::State {
  State(const Schedule& schedule, Comm* group, int rank)
      : s(schedule), group(group), rank(rank), ops(schedule.ops[rank]),
        slots(2 * static_cast<size_t>(s.directions) * s.stages * s.micro_batches) {}

  const Schedule& s;
  Comm* group;
  int rank;
  const std::vector<Op>& ops;
  BufferPool pool;
  std::vector<Slot> slots;  // indexed by slot()
  std::vector<InFlightSend> sends;
  StageWork* work = nullptr;
  double busy_s = 0;

  Slot& slot(const BufferKey& key) {
    return slots[((static_cast<size_t>(key.boundary) * s.directions + key.consumer.direction) *
                      s.stages + key.consumer.stage) * s.micro_batches + key.micro_batch];
  }
  float* data(int buffer) { return buffer >= 0 ? pool.data(buffer) : nullptr; }
  std::string where(int op_index) const {
    return "pipeline rank " + std::to_string(rank) + ", op #" + std::to_string(op_index) + " '" +
           describe(ops[op_index]) + "'";
  }

  void start(StageWork& stage_work) {
    work = &stage_work;
    busy_s = 0;
    pool.start_step(stage_work.boundary_elements());
    for (Slot& held : slots) held = Slot{};  // a step that threw may have left some behind
    sends.clear();
  }

  template <class Call>
  void timed(Call&& call) {
    const auto begin = std::chrono::steady_clock::now();
    call();
    busy_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  }

  // Files a new tensor under `key`: a compute op's output or a posted receive.
  int produce(const BufferKey& key, int op_index) {
    Slot& held = slot(key);
    if (held.buffer >= 0) {
      throw std::logic_error(where(op_index) + " produces the " + key_text(key) + ", which op '" +
                             describe(ops[held.origin_op]) + "' already provides (a schedule bug)");
    }
    held.buffer = pool.acquire();
    held.origin_op = op_index;
    return held.buffer;
  }

  // Removes the tensor under `key`, after its receive completed; the caller releases it.
  int take(const BufferKey& key, int op_index) {
    Slot& held = slot(key);
    if (held.buffer < 0) {
      throw std::logic_error(where(op_index) + " needs the " + key_text(key) +
                             ", but no earlier op on this rank produced it and no receive of "
                             "it is in the op list (a schedule bug)");
    }
    if (held.receive) held.receive->wait();
    const int buffer = held.buffer;
    held = Slot{};
    return buffer;
  }

  void post_receive(int op_index) {
    const BufferKey key = key_of_transfer(ops[op_index]);
    const int buffer = produce(key, op_index);
    slot(key).receive = group->irecv(pool.data(buffer), pool.elements(), DType::kFloat32,
                                     ops[op_index].peer, static_cast<int>(tag_of(s, key)));
  }

  void send(int op_index) {
    const BufferKey key = key_of_transfer(ops[op_index]);
    Slot& held = slot(key);
    if (held.buffer < 0 || held.receive) {
      throw std::logic_error(where(op_index) + ": the " + key_text(key) +
                             (held.buffer < 0 ? " was not produced by an earlier op on this rank"
                                              : " is being received here, not produced") +
                             " (a schedule bug)");
    }
    InFlightSend in_flight;
    in_flight.buffer = held.buffer;
    in_flight.request = group->isend(pool.data(held.buffer), pool.elements(), DType::kFloat32,
                                     ops[op_index].peer, static_cast<int>(tag_of(s, key)));
    sends.push_back(std::move(in_flight));
    held = Slot{};
  }

  bool last(const StageRef& stage) const { return stage.stage == s.stages - 1; }

  void forward(const StageRef& stage, int m, int op_index) {
    const int input = stage.stage > 0 ? take({kActivation, stage, m}, op_index) : -1;
    const int output =
        last(stage) ? -1 : produce({kActivation, {stage.direction, stage.stage + 1}, m}, op_index);
    timed([&] { work->forward(stage, m, data(input), data(output)); });
    if (input >= 0) pool.release(input);
  }

  void backward(const StageRef& stage, int m, bool split, int op_index) {
    const int grad_output = last(stage) ? -1 : take({kGradient, stage, m}, op_index);
    const int grad_input =
        stage.stage > 0 ? produce({kGradient, {stage.direction, stage.stage - 1}, m}, op_index)
                        : -1;
    timed([&] { work->backward(stage, m, data(grad_output), data(grad_input), split); });
    if (grad_output >= 0) pool.release(grad_output);
  }

  void run_op(int op_index) {
    const Op& op = ops[op_index];
    switch (op.kind) {
      case OpKind::kForward: forward(op.stage, op.micro_batch, op_index); break;
      case OpKind::kBackward: backward(op.stage, op.micro_batch, false, op_index); break;
      case OpKind::kBackwardInput: backward(op.stage, op.micro_batch, true, op_index); break;
      case OpKind::kBackwardWeight:
        timed([&] { work->backward_weight(op.stage, op.micro_batch); });
        break;
      case OpKind::kForwardBackward:  // on CPU the two halves simply run one after the other
        forward(op.stage, op.micro_batch, op_index);
        backward(op.stage2, op.micro_batch2, op.backward_split, op_index);
        break;
      case OpKind::kSendActivation:
      case OpKind::kSendGradient: send(op_index); break;
      case OpKind::kRecvActivation:
      case OpKind::kRecvGradient: break;  // posted at the start; its consumer waits for it
    }
  }

  // Completes the sends, then insists that nothing is left over: a tensor still held names
  // the receive nobody consumed, or the output nobody sent.
  void finish() {
    for (InFlightSend& in_flight : sends) {
      in_flight.request->wait();
      pool.release(in_flight.buffer);
    }
    sends.clear();
    for (const Slot& held : slots) {
      if (held.buffer < 0) continue;
      throw std::logic_error(
          where(held.origin_op) +
          (is_receive(ops[held.origin_op].kind)
               ? ": this receive was posted but no op consumed it"
               : ": its output was neither sent nor consumed on this rank") +
          " by the end of the step (a schedule bug)");
    }
  }
};

PipelineExecutor::PipelineExecutor(const Schedule& schedule, Comm* group)
    : schedule_(schedule), group_(group), rank_(group ? group->rank() : 0) {
  const Schedule& s = schedule_;
  if (group == nullptr && s.ranks != 1) {
    throw std::invalid_argument("pipeline schedule " + shape_text(s) +
                                ": a pipeline group is required when ranks != 1");
  }
  if (group != nullptr && group->size() != s.ranks) {
    throw std::invalid_argument("pipeline schedule " + shape_text(s) + " needs a group of " +
                                std::to_string(s.ranks) + " ranks, but group '" + group->name() +
                                "' has " + std::to_string(group->size()));
  }
  if (static_cast<int>(s.ops.size()) != s.ranks ||
      static_cast<int>(s.stages_of_rank.size()) != s.ranks || s.stages < 1 ||
      s.directions < 1 || s.micro_batches < 1) {
    throw std::invalid_argument("pipeline schedule " + shape_text(s) + " is malformed: " +
                                std::to_string(s.ops.size()) + " op lists and " +
                                std::to_string(s.stages_of_rank.size()) + " placements");
  }
  check_ops_in_range(s);
  check_tags_fit(s);
  state_ = std::make_unique<State>(schedule_, group_, rank_);
}

PipelineExecutor::~PipelineExecutor() = default;

PipelineTiming PipelineExecutor::run(StageWork& work) {
  const auto step_start = std::chrono::steady_clock::now();
  State& step = *state_;
  step.start(work);
  for (int i = 0; i < static_cast<int>(step.ops.size()); ++i) {
    if (is_receive(step.ops[i].kind)) step.post_receive(i);
  }
  for (int i = 0; i < static_cast<int>(step.ops.size()); ++i) step.run_op(i);
  step.finish();

  PipelineTiming timing;
  timing.busy_s = step.busy_s;
  timing.wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
  return timing;
}

Schedule forward_only_schedule(const Schedule& training, int micro_batches) {
  if (micro_batches < 1) {
    throw std::invalid_argument("forward_only_schedule: micro_batches = " +
                                std::to_string(micro_batches) + ", but at least 1 is needed");
  }
  Schedule s;
  s.kind = training.kind;
  s.ranks = training.ranks;
  s.stages = training.stages;
  s.directions = training.directions;
  s.micro_batches = micro_batches;
  s.stages_of_rank = training.stages_of_rank;
  s.ops.resize(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<int> held;  // direction-0 stages of rank r, ascending
    for (const StageRef& stage : s.stages_of_rank[r]) {
      if (stage.direction == 0) held.push_back(stage.stage);
    }
    std::sort(held.begin(), held.end());
    for (int m = 0; m < micro_batches; ++m) {
      for (int stage : held) {
        auto add = [&](OpKind kind, int peer) {
          Op op;
          op.kind = kind;
          op.stage = StageRef{0, stage};
          op.micro_batch = m;
          op.peer = peer;
          s.ops[r].push_back(op);
        };
        const int previous = stage > 0 ? s.rank_of({0, stage - 1}) : r;
        const int next = stage < s.stages - 1 ? s.rank_of({0, stage + 1}) : r;
        if (previous != r) add(OpKind::kRecvActivation, previous);
        add(OpKind::kForward, -1);
        if (next != r) add(OpKind::kSendActivation, next);
      }
    }
  }
  return s;
}

}  // namespace baleine::parallel
