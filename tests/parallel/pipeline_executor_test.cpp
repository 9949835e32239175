// PipelineExecutor without MPI: single-rank pipelines (group nullptr), where every boundary is
// a local hand-off, and the errors it raises at construction and for broken op lists.
// The numerical comparison with a sequential reference over real transfers is in
// pipeline_executor_mpi_test.cpp; here a StageWork checks the buffer routing itself: every
// boundary value encodes who wrote it, so a consumer can tell whether it got the right tensor.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/comm.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"
#include "tests/parallel/schedule_test_support.h"

namespace baleine::parallel {
namespace {

using schedule_testing::make_op;

constexpr int kWidth = 3;

// What stage `stage` writes for micro-batch m, element i: small integers, exact in float.
// Gradients are negative so an activation can never pass for a gradient.
float activation_code(int stage, int m, int i) { return float(1000 * stage + 10 * m + i + 1); }
float gradient_code(int stage, int m, int i) { return -activation_code(stage, m, i); }

// Checks that every input is its producer's output and counts each call per (stage, m).
class RoutingCheckWork final : public StageWork {
 public:
  explicit RoutingCheckWork(int stages) : stages_(stages) {}
  int64_t boundary_elements() const override { return kWidth; }

  void forward(const StageRef& stage, int m, const float* input, float* output) override {
    ++calls('F', stage.stage, m);
    seen(input);
    seen(output);
    EXPECT_EQ(input == nullptr, stage.stage == 0);
    EXPECT_EQ(output == nullptr, stage.stage == stages_ - 1);
    for (int i = 0; i < kWidth; ++i) {
      if (input) {
        EXPECT_EQ(input[i], activation_code(stage.stage - 1, m, i)) << "F m" << m;
      }
      if (output) output[i] = activation_code(stage.stage, m, i);
    }
  }

  void backward(const StageRef& stage, int m, const float* grad_output, float* grad_input,
                bool split) override {
    EXPECT_EQ(calls('F', stage.stage, m), 1) << "B s" << stage.stage << " m" << m;
    ++calls(split ? 'I' : 'B', stage.stage, m);
    seen(grad_output);
    seen(grad_input);
    EXPECT_EQ(grad_output == nullptr, stage.stage == stages_ - 1);
    EXPECT_EQ(grad_input == nullptr, stage.stage == 0);
    for (int i = 0; i < kWidth; ++i) {
      if (grad_output) {
        EXPECT_EQ(grad_output[i], gradient_code(stage.stage + 1, m, i)) << "B m" << m;
      }
      if (grad_input) grad_input[i] = gradient_code(stage.stage, m, i);
    }
  }

  void backward_weight(const StageRef& stage, int m) override {
    EXPECT_EQ(calls('I', stage.stage, m), 1) << "W s" << stage.stage << " m" << m;
    ++calls('W', stage.stage, m);
  }

  // F once per (stage, m); then either one B, or one BI and one W.
  void expect_every_call_once(int micro_batches) {
    for (int s = 0; s < stages_; ++s) {
      for (int m = 0; m < micro_batches; ++m) {
        EXPECT_EQ(calls('F', s, m), 1) << "s" << s << " m" << m;
        const int full = calls('B', s, m), split = calls('I', s, m);
        EXPECT_EQ(full + split, 1) << "s" << s << " m" << m;
        EXPECT_EQ(calls('W', s, m), split) << "s" << s << " m" << m;
      }
    }
  }

  const std::set<const float*>& buffers() const { return buffers_; }

 private:
  int& calls(char kind, int stage, int m) { return calls_[std::make_tuple(kind, stage, m)]; }
  void seen(const float* p) {
    if (p) buffers_.insert(p);
  }
  int stages_;
  std::map<std::tuple<char, int, int>, int> calls_;
  std::set<const float*> buffers_;
};

void run_single_rank_twice(ScheduleKind kind, int micro_batches) {
  SCOPED_TRACE(std::string(schedule_name(kind)) + ", " + std::to_string(micro_batches) +
               " micro-batches");
  const Schedule schedule = make_schedule(kind, 1, micro_batches);
  PipelineExecutor executor(schedule, nullptr);
  RoutingCheckWork first(schedule.stages);
  const PipelineTiming timing = executor.run(first);
  first.expect_every_call_once(micro_batches);
  EXPECT_GT(timing.busy_s, 0.0);
  EXPECT_LE(timing.busy_s, timing.wall_s);

  RoutingCheckWork second(schedule.stages);
  executor.run(second);
  second.expect_every_call_once(micro_batches);
  for (const float* p : second.buffers()) {
    EXPECT_EQ(first.buffers().count(p), 1u) << "the second step allocated a new buffer";
  }
}

TEST(PipelineExecutor, SingleRankSchedulesRouteEveryTensor) {
  for (int m : {1, 3}) run_single_rank_twice(ScheduleKind::k1F1B, m);
  run_single_rank_twice(ScheduleKind::kZB1P, 3);
  // One rank holds both stages of the V: both boundaries are local hand-offs.
  for (int m : {2, 5}) run_single_rank_twice(ScheduleKind::kDualPipeV, m);
}

TEST(PipelineExecutor, ForwardOnlyOnOneRankRunsEveryForward) {
  const Schedule schedule =
      forward_only_schedule(make_schedule(ScheduleKind::kDualPipeV, 1, 2), 3);
  EXPECT_EQ(schedule.micro_batches, 3);
  EXPECT_EQ(schedule.ops[0].size(), 6u);  // F s0, F s1 per micro-batch; no transfers
  PipelineExecutor executor(schedule, nullptr);
  RoutingCheckWork work(schedule.stages);
  executor.run(work);
}

TEST(PipelineExecutor, ForwardOnlyScheduleTransfersBetweenRanks) {
  // DualPipeV on 2 ranks: rank 0 holds s0, s3; rank 1 holds s1, s2 (the tip is local).
  const Schedule schedule =
      forward_only_schedule(make_schedule(ScheduleKind::kDualPipeV, 2, 4), 1);
  std::vector<std::string> rank0, rank1;
  for (const Op& op : schedule.ops[0]) rank0.push_back(describe(op));
  for (const Op& op : schedule.ops[1]) rank1.push_back(describe(op));
  EXPECT_EQ(rank0, (std::vector<std::string>{"F s0 m0", "send-act s0 m0 -> r1",
                                             "recv-act s3 m0 <- r1", "F s3 m0"}));
  EXPECT_EQ(rank1, (std::vector<std::string>{"recv-act s1 m0 <- r0", "F s1 m0", "F s2 m0",
                                             "send-act s2 m0 -> r0"}));
}

// A group that exists only to have a size; transfers complete at once and move nothing.
class StubGroup final : public CommGroupState {
 public:
  explicit StubGroup(int size) : CommGroupState("stub") {
    size_ = size;
    world_ranks_.resize(size);
  }
  void allreduce_sum(void*, int64_t, DType) override { unused(); }
  void reduce_scatter_sum(const void*, void*, int64_t, DType) override { unused(); }
  void allgather(const void*, void*, int64_t, DType) override { unused(); }
  void alltoall(const void*, void*, int64_t, DType) override { unused(); }
  void alltoallv(const void*, const int64_t*, const int64_t*, void*, const int64_t*,
                 const int64_t*, DType) override { unused(); }
  void broadcast(void*, int64_t, DType, int) override { unused(); }
  void barrier() override { unused(); }
  std::unique_ptr<Request> isend(const void*, int64_t, DType, int, int) override {
    return std::make_unique<Done>();
  }
  std::unique_ptr<Request> irecv(void*, int64_t, DType, int, int) override {
    return std::make_unique<Done>();
  }
  std::unique_ptr<Comm> split(int, int, const std::string&) override { unused(); }

 private:
  struct Done final : Request {
    void wait() override {}
  };
  [[noreturn]] static void unused() { throw std::logic_error("StubGroup: not for collectives"); }
};

template <class Exception>
std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

TEST(PipelineExecutor, TagsAboveTheMpiMinimumAreRejectedWithTheShape) {
  StubGroup group(2);
  // 1F1B on 2 ranks: 2 tags (activation, gradient) per micro-batch, 0 .. 2·M − 1.
  EXPECT_NO_THROW(PipelineExecutor(make_schedule(ScheduleKind::k1F1B, 2, 16384), &group));
  const std::string message = message_of<std::invalid_argument>(
      [&] { PipelineExecutor(make_schedule(ScheduleKind::k1F1B, 2, 16385), &group); });
  EXPECT_NE(message.find("1f1b"), std::string::npos) << message;
  EXPECT_NE(message.find("16385 micro-batch"), std::string::npos) << message;
  EXPECT_NE(message.find("32769"), std::string::npos) << message;
  EXPECT_NE(message.find("at most 16384"), std::string::npos) << message;
}

TEST(PipelineExecutor, GroupMustMatchTheScheduleRanks) {
  StubGroup three(3);
  const Schedule two_ranks = make_schedule(ScheduleKind::k1F1B, 2, 4);
  EXPECT_THROW(PipelineExecutor(two_ranks, nullptr), std::invalid_argument);
  const std::string message =
      message_of<std::invalid_argument>([&] { PipelineExecutor(two_ranks, &three); });
  EXPECT_NE(message.find("group of 2 ranks"), std::string::npos) << message;
}

// A one-rank schedule holding stages 0 and 1 with hand-written ops.
Schedule two_local_stages(std::vector<Op> ops) {
  Schedule s;
  s.ranks = 1;
  s.stages = 2;
  s.micro_batches = 1;
  s.stages_of_rank = {{StageRef{0, 0}, StageRef{0, 1}}};
  s.ops = {std::move(ops)};
  return s;
}

std::string schedule_bug(const Schedule& schedule, Comm* group) {
  PipelineExecutor executor(schedule, group);
  RoutingCheckWork work(schedule.stages);
  return message_of<std::logic_error>([&] { executor.run(work); });
}

TEST(PipelineExecutor, BrokenOpListsAreReportedWithTheOp) {
  const std::string no_producer =
      schedule_bug(two_local_stages({make_op(OpKind::kForward, 1, 0)}), nullptr);
  EXPECT_NE(no_producer.find("'F s1 m0' needs the activation for s1 m0"), std::string::npos)
      << no_producer;

  const std::string unconsumed =
      schedule_bug(two_local_stages({make_op(OpKind::kForward, 0, 0)}), nullptr);
  EXPECT_NE(unconsumed.find("'F s0 m0': its output was neither sent nor consumed"),
            std::string::npos) << unconsumed;

  StubGroup one(1);
  const std::string unused_receive = schedule_bug(
      two_local_stages({make_op(OpKind::kRecvActivation, 1, 0, /*peer=*/0)}), &one);
  EXPECT_NE(unused_receive.find("'recv-act s1 m0 <- r0': this receive was posted but no op "
                                "consumed it"), std::string::npos) << unused_receive;

  const std::string twice = schedule_bug(
      two_local_stages(
          {make_op(OpKind::kRecvActivation, 1, 0, 0), make_op(OpKind::kForward, 0, 0)}),
      &one);
  EXPECT_NE(twice.find("which op 'recv-act s1 m0 <- r0' already provides"), std::string::npos)
      << twice;
}

TEST(PipelineExecutor, OpsOutsideTheShapeAreRejected) {
  EXPECT_THROW(PipelineExecutor(two_local_stages({make_op(OpKind::kForward, 2, 0)}), nullptr),
               std::invalid_argument);
  EXPECT_THROW(PipelineExecutor(two_local_stages({make_op(OpKind::kForward, 0, 1)}), nullptr),
               std::invalid_argument);
  // A gradient sent from stage 0 would go to stage −1.
  EXPECT_THROW(
      PipelineExecutor(two_local_stages({make_op(OpKind::kSendGradient, 0, 0, 0)}), nullptr),
      std::invalid_argument);
}

}  // namespace
}  // namespace baleine::parallel
