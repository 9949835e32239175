// PipelineExecutor on real MPI transfers (2 and 4 ranks; the pipeline group is the world), for
// every schedule kind, against a plain sequential single-process reference.
//
// The model is a toy: model stage s maps x to y = tanh(a_s ⊙ x + b_s) elementwise on kWidth
// values; stage 0 reads its "tokens" from a deterministic function of the micro-batch and the
// last stage's loss is 0.5 Σ y². Boundary tensors are float (as in the executor), everything
// else double. The reference rounds to float at the same boundaries and evaluates the very same
// functions (forward_value, ...) on the same inputs, so every per-(stage, micro-batch) gradient
// and every loss must be bit-identical: those are compared with EXPECT_EQ. Only the totals over
// micro-batches are summed in another order (per rank, then allreduce), which changes a sum of
// M terms by at most about M·ε·Σ|terms| ≈ 1e-15·Σ|terms|; they are compared to 1e-12·Σ|terms|.
//
// Collective code only uses EXPECT_ (never ASSERT_), so a failing rank still joins every
// allreduce (tests/mpi_gtest_main.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "parallel/comm.h"
#include "parallel/pipeline_executor.h"
#include "parallel/schedule.h"

namespace baleine::parallel {
namespace {

constexpr double kTimeoutS = 60.0;  // 4 ranks share 2 cores in CI
constexpr int kWidth = 5;           // boundary elements

// --- the toy model, shared by the StageWork and the reference --------------------------------

double weight_a(int stage, int i) { return 0.9 + 0.07 * stage - 0.11 * i; }
double bias_b(int stage, int i) { return 0.05 * ((stage + 2 * i) % 5) - 0.1; }
double token(int micro_batch, int i) { return std::sin(0.7 * micro_batch + 1.3 * i + 0.2); }

double forward_value(int stage, int i, double x) {
  return std::tanh(weight_a(stage, i) * x + bias_b(stage, i));
}
// dL/dz for z = a·x + b, from dL/dy: tanh' = 1 − y².
double pre_activation_gradient(double dy, double y) { return dy * (1.0 - y * y); }
double input_gradient(int stage, int i, double dz) { return dz * weight_a(stage, i); }
double half_sum_of_squares(const double* y) {
  double sum = 0;
  for (int i = 0; i < kWidth; ++i) sum += y[i] * y[i];
  return 0.5 * sum;
}

// Gradients of one model stage: da[0..W), then db[0..W).
constexpr int kGradSize = 2 * kWidth;

struct Results {
  int stages = 0, micro_batches = 0;
  std::vector<double> loss;           // [m]; 0 where not computed on this rank
  std::vector<double> contribution;   // [stage][m][kGradSize]; 0 where not computed here
  std::vector<double> total;          // [stage][kGradSize], accumulated in execution order
  std::vector<int> backwards;         // [stage][m]: weight gradients computed here (0 or 1)
  std::vector<int> forwards;          // [stage][m]
  Results(int s, int m)
      : stages(s), micro_batches(m), loss(m), contribution(size_t(s) * m * kGradSize),
        total(size_t(s) * kGradSize), backwards(size_t(s) * m), forwards(size_t(s) * m) {}
  double* grads(int stage, int m) {
    return &contribution[(size_t(stage) * micro_batches + m) * kGradSize];
  }
  void add_weight_gradient(int stage, int m, const double* x, const double* dz) {
    double* g = grads(stage, m);
    for (int i = 0; i < kWidth; ++i) {
      g[i] = dz[i] * x[i];
      g[kWidth + i] = dz[i];
      total[size_t(stage) * kGradSize + i] += g[i];
      total[size_t(stage) * kGradSize + kWidth + i] += g[kWidth + i];
    }
    ++backwards[size_t(stage) * micro_batches + m];
  }
};

// All micro-batches through all stages, one after the other, in one process.
Results sequential_reference(int stages, int micro_batches) {
  Results ref(stages, micro_batches);
  for (int m = 0; m < micro_batches; ++m) {
    std::vector<std::vector<double>> x(stages, std::vector<double>(kWidth));
    std::vector<std::vector<double>> y(stages, std::vector<double>(kWidth));
    for (int i = 0; i < kWidth; ++i) x[0][i] = token(m, i);
    for (int s = 0; s < stages; ++s) {
      for (int i = 0; i < kWidth; ++i) y[s][i] = forward_value(s, i, x[s][i]);
      if (s + 1 < stages) {
        for (int i = 0; i < kWidth; ++i) x[s + 1][i] = static_cast<float>(y[s][i]);
      }
      ++ref.forwards[size_t(s) * micro_batches + m];
    }
    ref.loss[m] = half_sum_of_squares(y[stages - 1].data());
    std::vector<double> dy = y[stages - 1], dz(kWidth);
    for (int s = stages - 1; s >= 0; --s) {
      for (int i = 0; i < kWidth; ++i) dz[i] = pre_activation_gradient(dy[i], y[s][i]);
      ref.add_weight_gradient(s, m, x[s].data(), dz.data());
      for (int i = 0; i < kWidth; ++i) dy[i] = static_cast<float>(input_gradient(s, i, dz[i]));
    }
  }
  return ref;
}

// --- the StageWork under test ----------------------------------------------------------------

// One rank's stages of the toy model. Every call checks that it is legal at that point of the
// step (failures name the call); check_complete() checks nothing was left out.
class ToyStageWork final : public StageWork {
 public:
  ToyStageWork(const Schedule& schedule, int rank, bool training)
      : s_(schedule), rank_(rank), training_(training),
        results_(schedule.stages, schedule.micro_batches) {}

  int64_t boundary_elements() const override { return kWidth; }

  void forward(const StageRef& stage, int m, const float* input, float* output) override {
    Record& r = record(stage, m, "F");
    if (r.forward) ADD_FAILURE() << what("F", stage, m) << " repeated";
    r.forward = true;
    expect_pointer(input, stage.stage > 0, "F", stage, m, "input");
    expect_pointer(output, stage.stage < s_.stages - 1, "F", stage, m, "output");
    for (int i = 0; i < kWidth; ++i) {
      r.x[i] = stage.stage == 0 ? token(m, i) : (input ? input[i] : 0.0);
      r.y[i] = forward_value(stage.stage, i, r.x[i]);
      if (output) output[i] = static_cast<float>(r.y[i]);
    }
    if (stage.stage == s_.stages - 1) results_.loss[m] = half_sum_of_squares(r.y);
    ++results_.forwards[size_t(stage.stage) * s_.micro_batches + m];
  }

  void backward(const StageRef& stage, int m, const float* grad_output, float* grad_input,
                bool split) override {
    Record& r = record(stage, m, "B");
    if (!training_) ADD_FAILURE() << what("B", stage, m) << " in a forward-only step";
    if (!r.forward) ADD_FAILURE() << what("B", stage, m) << " before its forward";
    if (r.backward) ADD_FAILURE() << what("B", stage, m) << " repeated";
    r.backward = true;
    r.split = split;
    const bool last = stage.stage == s_.stages - 1;
    expect_pointer(grad_output, !last, "B", stage, m, "grad_output");
    expect_pointer(grad_input, stage.stage > 0, "B", stage, m, "grad_input");
    for (int i = 0; i < kWidth; ++i) {
      const double dy = last ? r.y[i] : (grad_output ? grad_output[i] : 0.0);
      r.dz[i] = pre_activation_gradient(dy, r.y[i]);
      if (grad_input) grad_input[i] = static_cast<float>(input_gradient(stage.stage, i, r.dz[i]));
    }
    if (!split) results_.add_weight_gradient(stage.stage, m, r.x, r.dz);
  }

  void backward_weight(const StageRef& stage, int m) override {
    Record& r = record(stage, m, "W");
    if (!r.backward || !r.split) ADD_FAILURE() << what("W", stage, m) << " without a split B";
    if (r.weight) ADD_FAILURE() << what("W", stage, m) << " repeated";
    r.weight = true;
    results_.add_weight_gradient(stage.stage, m, r.x, r.dz);
  }

  // Every stage this rank holds saw each of its micro-batches: F, then (training) B, and a W
  // exactly when the B was split.
  void check_complete() const {
    for (const StageRef& stage : s_.stages_of_rank[rank_]) {
      for (int m = 0; m < s_.micro_batches; ++m) {
        if (direction_of(m) != stage.direction) continue;
        const auto it = records_.find(std::make_tuple(stage.direction, stage.stage, m));
        const bool f = it != records_.end() && it->second.forward;
        const bool b = it != records_.end() && it->second.backward;
        const bool w = it != records_.end() && it->second.weight;
        EXPECT_TRUE(f) << what("F", stage, m) << " never ran";
        if (!training_) continue;
        EXPECT_TRUE(b) << what("B", stage, m) << " never ran";
        if (b) {
          EXPECT_EQ(w, it->second.split) << what("W", stage, m) << " ran iff its B was split";
        }
      }
    }
  }

  const Results& results() const { return results_; }
  const std::set<const void*>& pointers() const { return pointers_; }

 private:
  struct Record {
    bool forward = false, backward = false, split = false, weight = false;
    double x[kWidth] = {}, y[kWidth] = {}, dz[kWidth] = {};
  };

  // Forward-only steps run every micro-batch in direction 0 (forward_only_schedule).
  int direction_of(int m) const { return training_ ? s_.direction_of(m) : 0; }

  std::string what(const char* call, const StageRef& stage, int m) const {
    return std::string("rank ") + std::to_string(rank_) + ": " + call + " d" +
           std::to_string(stage.direction) + ":s" + std::to_string(stage.stage) + " m" +
           std::to_string(m);
  }

  Record& record(const StageRef& stage, int m, const char* call) {
    const auto& held = s_.stages_of_rank[rank_];
    if (std::find(held.begin(), held.end(), stage) == held.end()) {
      ADD_FAILURE() << what(call, stage, m) << " on a stage this rank does not hold";
    }
    if (m < 0 || m >= s_.micro_batches || direction_of(m) != stage.direction) {
      ADD_FAILURE() << what(call, stage, m) << ": micro-batch not of this direction";
    }
    return records_[std::make_tuple(stage.direction, stage.stage, m)];
  }

  void expect_pointer(const void* p, bool wanted, const char* call, const StageRef& stage, int m,
                      const char* name) {
    if ((p != nullptr) != wanted) {
      ADD_FAILURE() << what(call, stage, m) << ": " << name << " should be "
                    << (wanted ? "a buffer" : "nullptr");
    }
    if (p) pointers_.insert(p);
  }

  const Schedule& s_;
  int rank_;
  bool training_;
  Results results_;
  std::map<std::tuple<int, int, int>, Record> records_;
  std::set<const void*> pointers_;
};

// --- checks --------------------------------------------------------------------------------

// Sums over the world; every rank returns the same vector.
std::vector<double> world_sum(Comm& world, std::vector<double> v) {
  world.allreduce_sum(v.data(), static_cast<int64_t>(v.size()), DType::kFloat64);
  return v;
}
std::vector<int> world_sum(Comm& world, std::vector<int> v) {
  world.allreduce_sum(v.data(), static_cast<int64_t>(v.size()), DType::kInt32);
  return v;
}

void expect_timing_honest(const PipelineTiming& t) {
  EXPECT_GT(t.busy_s, 0.0);
  EXPECT_LE(t.busy_s, t.wall_s);
  EXPECT_GE(t.bubble_s(), 0.0);
}

// The world-wide results equal the reference: every forward (and backward) ran exactly once
// somewhere, every loss and per-micro-batch gradient is bit-identical, and the summed totals
// are the full-batch gradient.
void expect_world_matches_reference(Comm& world, const Results& mine, const Results& ref,
                                    bool training) {
  EXPECT_EQ(world_sum(world, mine.forwards), ref.forwards);
  EXPECT_EQ(world_sum(world, mine.loss), ref.loss);
  if (!training) return;
  EXPECT_EQ(world_sum(world, mine.backwards), ref.backwards);
  EXPECT_EQ(world_sum(world, mine.contribution), ref.contribution);
  const std::vector<double> total = world_sum(world, mine.total);
  for (int s = 0; s < ref.stages; ++s) {
    for (int k = 0; k < kGradSize; ++k) {
      double scale = 0;  // Σ|terms|: what reordering the sum can disturb
      for (int m = 0; m < ref.micro_batches; ++m) {
        scale += std::fabs(ref.contribution[(size_t(s) * ref.micro_batches + m) * kGradSize + k]);
      }
      const size_t at = size_t(s) * kGradSize + k;
      EXPECT_NEAR(total[at], ref.total[at], 1e-12 * scale) << "stage " << s << " grad " << k;
    }
  }
}

// Runs the step twice on fresh StageWorks: the same results, and the second step's boundary
// buffers all come from the first step's pool.
void run_and_check(const Schedule& schedule, Comm& world, bool training) {
  SCOPED_TRACE(std::string(schedule_name(schedule.kind)) + (training ? "" : " forward-only") +
               ", " + std::to_string(schedule.ranks) + " ranks, " +
               std::to_string(schedule.micro_batches) + " micro-batches");
  const Results ref = sequential_reference(schedule.stages, schedule.micro_batches);
  PipelineExecutor executor(schedule, &world);

  ToyStageWork first(schedule, world.rank(), training);
  expect_timing_honest(executor.run(first));
  first.check_complete();
  expect_world_matches_reference(world, first.results(), ref, training);

  ToyStageWork second(schedule, world.rank(), training);
  expect_timing_honest(executor.run(second));
  second.check_complete();
  EXPECT_EQ(second.results().loss, first.results().loss);
  EXPECT_EQ(second.results().contribution, first.results().contribution);
  EXPECT_EQ(second.results().total, first.results().total);
  for (const void* p : second.pointers()) {
    EXPECT_EQ(first.pointers().count(p), 1u) << "second step allocated a new boundary buffer";
  }
}

void check_training(ScheduleKind kind, std::vector<int> micro_batch_counts) {
  auto world = make_mpi_world(kTimeoutS);
  std::sort(micro_batch_counts.begin(), micro_batch_counts.end());
  micro_batch_counts.erase(std::unique(micro_batch_counts.begin(), micro_batch_counts.end()),
                           micro_batch_counts.end());
  for (int m : micro_batch_counts) {
    run_and_check(make_schedule(kind, world->size(), m), *world, true);
  }
}

int pipeline_ranks() { return make_mpi_world(kTimeoutS)->size(); }

TEST(PipelineExecutorMpi, OneFOneBMatchesSequentialReference) {
  const int pp = pipeline_ranks();
  check_training(ScheduleKind::k1F1B, {1, pp - 1, 2 * pp, 2 * pp + 2});
}

TEST(PipelineExecutorMpi, ZB1PMatchesSequentialReference) {
  const int pp = pipeline_ranks();
  check_training(ScheduleKind::kZB1P, {1, pp - 1, 2 * pp, 2 * pp + 2});
}

// Mirror pairs hold the same model stage in opposite directions and see different halves of
// the micro-batches; expect_world_matches_reference sums them.
TEST(PipelineExecutorMpi, DualPipeMatchesSequentialReference) {
  const int pp = pipeline_ranks();
  check_training(ScheduleKind::kDualPipe, {2 * pp, 2 * pp + 2});
}

// The V's tip (stages D−1 → D) is a local hand-off on the last rank.
TEST(PipelineExecutorMpi, DualPipeVMatchesSequentialReference) {
  const int pp = pipeline_ranks();
  check_training(ScheduleKind::kDualPipeV, {2 * pp, 2 * pp + 2});
}

TEST(PipelineExecutorMpi, ForwardOnlyLossesMatchSequentialReference) {
  auto world = make_mpi_world(kTimeoutS);
  const int pp = world->size();
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kZB1P, ScheduleKind::kDualPipe,
                            ScheduleKind::kDualPipeV}) {
    const Schedule training = make_schedule(kind, pp, 2 * pp);
    for (int m : {1, pp + 1}) run_and_check(forward_only_schedule(training, m), *world, false);
  }
}

}  // namespace
}  // namespace baleine::parallel
