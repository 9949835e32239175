// The expert loop (trainer/model/expert_loop.h): when it runs experts in parallel, that every
// busy expert runs exactly once, that errors come back to the caller, and that a whole MoE
// model gives the same bits whether its experts ran in parallel (2 threads) or one after
// another (1 thread), in every precision.
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/gradcheck.h"
#include "trainer/model/expert_loop.h"
#include "trainer/model/model.h"

namespace baleine::model {
namespace {

bool run_experts_in_parallel(const std::vector<int64_t>& rows, int threads) {
  return model::run_experts_in_parallel(rows.data(), static_cast<int64_t>(rows.size()), threads);
}

TEST(ExpertLoop, ParallelOnlyWhenTheRowsSplitEvenly) {
  // 16 experts of ~128 rows (cpu-large after warm-up): parallel.
  EXPECT_TRUE(run_experts_in_parallel({85, 22, 3, 169, 106, 27, 48, 87, 30, 24, 300, 457, 33, 161,
                                       108, 388},
                                      2));
  // Two experts with all the rows, one per thread: parallel.
  EXPECT_TRUE(run_experts_in_parallel({0, 1024, 0, 0, 1024, 0}, 2));
  // Two big and some small, still within 10% of even (965+50+27+1 against 934+69+1+1).
  EXPECT_TRUE(run_experts_in_parallel({965, 0, 69, 0, 1, 27, 934, 50, 1, 1}, 2));
  // One expert with most of the rows: its thread would run ~2x longer than an even split.
  EXPECT_FALSE(run_experts_in_parallel({1500, 100, 100, 100, 100, 100, 48}, 2));
  // One busy expert, or one thread: nothing to share.
  EXPECT_FALSE(run_experts_in_parallel({0, 0, 2048, 0}, 2));
  EXPECT_FALSE(run_experts_in_parallel({128, 128, 128, 128}, 1));
  EXPECT_FALSE(run_experts_in_parallel({}, 2));
  // Three equal experts on two threads: the busiest thread has 2 of 3 (33% above even).
  EXPECT_FALSE(run_experts_in_parallel({100, 100, 100}, 2));
  EXPECT_TRUE(run_experts_in_parallel({100, 100, 100}, 3));
}

TEST(ExpertLoop, EveryBusyExpertRunsOnceInEitherMode) {
  const int saved = omp_get_max_threads();
  for (const std::vector<int64_t>& rows :
       {std::vector<int64_t>{128, 0, 64, 200, 90, 0, 130, 70, 110, 95},  // parallel
        std::vector<int64_t>{2000, 0, 10, 10}}) {                       // one after another
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      std::vector<std::atomic<int>> calls(rows.size());
      std::atomic<int> max_team{0};
      for_each_expert(rows.data(), static_cast<int64_t>(rows.size()), [&](int64_t j) {
        ++calls[static_cast<size_t>(j)];
        // Kernels inside the work see a team of one when the loop itself is parallel.
        int team = 0;
#pragma omp parallel
        {
#pragma omp single
          team = omp_get_num_threads();
        }
        if (team > max_team) max_team = team;
      });
      for (size_t j = 0; j < rows.size(); ++j)
        EXPECT_EQ(calls[j].load(), rows[j] > 0 ? 1 : 0) << "expert " << j << ", " << threads
                                                        << " threads";
      if (run_experts_in_parallel(rows, threads)) {
        EXPECT_EQ(max_team.load(), 1);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(ExpertLoop, AnErrorInOneExpertReachesTheCaller) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  const std::vector<int64_t> rows(8, 100);
  ASSERT_TRUE(run_experts_in_parallel(rows, 2));
  std::atomic<int> finished{0};
  EXPECT_THROW(for_each_expert(rows.data(), static_cast<int64_t>(rows.size()),
                               [&](int64_t j) {
                                 if (j == 3) throw std::runtime_error("expert 3 failed");
                                 ++finished;
                               }),
               std::runtime_error);
  EXPECT_EQ(finished.load(), 7);  // the others still ran
  omp_set_num_threads(saved);
}

// Loss and every gradient of a micro-batch, with the given thread count.
struct Outcome {
  double loss = 0;
  std::vector<float> grads;
};

Outcome run_model(const std::string& compute, int threads) {
  config::ModelSection m;
  m.hidden = 64;
  m.heads = 2;
  m.layers = 2;
  m.dense_layers = 0;
  m.intermediate = 64;
  m.moe.routed_experts = 8;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 48;
  config::PrecisionSection p;
  p.compute = compute;
  Model<float> model(m, 5, {}, plan_precision(p));
  const BatchShape shape{2, 48};
  const auto inputs = testing::random_ids(shape.tokens(), static_cast<int32_t>(m.vocab_size), 1);
  const auto targets = testing::random_ids(shape.tokens(), static_cast<int32_t>(m.vocab_size), 2);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  model.parameters().zero_grads();
  Outcome out;
  out.loss = model.forward(inputs.data(), targets.data(), shape).total();
  model.backward(1.0f);
  omp_set_num_threads(saved);
  out.grads = model.parameters().grads().to_host();
  return out;
}

TEST(ExpertLoop, ExpertsInParallelGiveTheSameBitsAsOneAfterAnother) {
  for (const std::string compute : {"fp32", "bf16", "fp8"}) {
    const Outcome one = run_model(compute, 1);
    const int64_t parallel_before = expert_loops_run_in_parallel();
    const Outcome two = run_model(compute, 2);
    // The forward, input-gradient and weight-gradient loops of both MoE layers.
    EXPECT_GE(expert_loops_run_in_parallel() - parallel_before, 4) << compute;
    EXPECT_EQ(one.loss, two.loss) << compute;
    ASSERT_EQ(one.grads.size(), two.grads.size());
    size_t differing = 0;
    for (size_t i = 0; i < one.grads.size(); ++i) differing += one.grads[i] != two.grads[i];
    EXPECT_EQ(differing, 0u) << compute << ": of " << one.grads.size() << " gradients";
  }
}

}  // namespace
}  // namespace baleine::model
