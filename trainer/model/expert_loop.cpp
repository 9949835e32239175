#include "trainer/model/expert_loop.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <vector>

#include "kernels/memory.h"

namespace baleine::model {

namespace {
// How far above an even split the busiest thread may be. A thread running whole experts alone
// gets more out of each GEMM than two threads sharing one, and that covers this much imbalance:
// cpu-large steps with 2 threads ran ~4-8% faster with experts in parallel (steps alternating
// between the two ways in one run), the threads busy 98% of the loop.
constexpr int64_t kMaxImbalancePercent = 10;

std::atomic<int64_t> parallel_loops{0};

// The experts by rows, largest first, in a buffer of the calling thread reused across calls.
const std::vector<int64_t>& largest_first(const int64_t* rows, int64_t experts) {
  thread_local std::vector<int64_t> order;
  order.resize(static_cast<size_t>(experts));
  for (int64_t j = 0; j < experts; ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [rows](int64_t a, int64_t b) { return rows[a] > rows[b]; });
  return order;
}

// run_experts_in_parallel's test (threads >= 2), given the experts ordered largest first.
bool balanced_enough(const int64_t* rows, const std::vector<int64_t>& order, int threads) {
  if (order.size() < 2 || rows[order[1]] == 0) return false;  // at most one busy expert
  // Each expert in turn onto the least loaded thread, as the dynamic schedule of
  // for_each_expert hands them out; then the busiest thread against an even split.
  thread_local std::vector<int64_t> load;
  load.assign(static_cast<size_t>(threads), 0);
  int64_t total = 0;
  for (int64_t j : order) {
    *std::min_element(load.begin(), load.end()) += rows[j];
    total += rows[j];
  }
  const int64_t busiest = *std::max_element(load.begin(), load.end());
  return busiest * threads * 100 <= total * (100 + kMaxImbalancePercent);
}
}  // namespace

int64_t expert_loops_run_in_parallel() { return parallel_loops.load(); }

bool run_experts_in_parallel(const int64_t* rows, int64_t experts, int threads) {
  return threads >= 2 && balanced_enough(rows, largest_first(rows, experts), threads);
}

void detail::for_each_expert(const int64_t* rows, int64_t experts, ExpertWork work,
                             void* context) {
  // A device backend queues every expert's kernels on one stream, in order: threads would only
  // contend for it.
  const bool host = kernels::current_memory().is_host();
  const int threads = omp_in_parallel() || !host ? 1 : omp_get_max_threads();
  // Sorted once: the same order decides and, if parallel, hands the experts out.
  const std::vector<int64_t>* order = threads >= 2 ? &largest_first(rows, experts) : nullptr;
  if (!order || !balanced_enough(rows, *order, threads)) {
    for (int64_t j = 0; j < experts; ++j) {
      if (rows[j] > 0) work(context, j);
    }
    return;
  }
  ++parallel_loops;
  // An exception must not leave the parallel region (that terminates the process).
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t i = 0; i < experts; ++i) {
    const int64_t j = (*order)[static_cast<size_t>(i)];
    if (rows[j] == 0) continue;
    try {
      work(context, j);
    } catch (...) {
#pragma omp critical(baleine_expert_loop_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace baleine::model
