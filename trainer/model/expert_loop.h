#pragma once
// Runs the same piece of work (a forward or backward SwiGLU) for every local routed expert.
//
// With many experts of a few hundred rows each, every GEMM in an expert is small: split over
// the threads it pays a fork/join and a barrier per call, and a thread's share of a 128-row
// product is a handful of tiles. So when the rows spread over the experts evenly enough, whole
// experts become the unit of parallel work instead: each thread runs its experts' kernels on its
// own (kernels called inside a parallel region run on the calling thread alone), largest
// experts first so the last ones fill the gaps. Otherwise (one busy expert, or one holding most
// of the rows, as right after initialisation when the router sends nearly every token to the
// same two) the experts run one after another with every kernel using all threads. Every kernel
// gives the same bits on one thread as on many, so the choice does not change the result.
//
// Nothing here allocates once warm: the training step allocates nothing.
#include <cstdint>
#include <type_traits>

namespace baleine::model {

// True when `experts` experts with these row counts should run in parallel on `threads`
// threads: at least two are busy, and handing them out largest first leaves the busiest thread
// within 10% of an even split.
bool run_experts_in_parallel(const int64_t* rows_per_expert, int64_t experts, int threads);

namespace detail {
using ExpertWork = void (*)(void* context, int64_t expert);
void for_each_expert(const int64_t* rows_per_expert, int64_t experts, ExpertWork work,
                     void* context);
}  // namespace detail

// Calls work(j) once for every expert j < experts with rows_per_expert[j] > 0: on any thread,
// in any order when run in parallel, so work for different experts must touch disjoint memory.
// An exception thrown by work reaches the caller (the first one, after the other experts ran).
template <typename Work>
void for_each_expert(const int64_t* rows_per_expert, int64_t experts, Work&& work) {
  using W = std::remove_reference_t<Work>;
  detail::for_each_expert(
      rows_per_expert, experts,
      [](void* context, int64_t j) { (*static_cast<W*>(context))(j); },
      const_cast<std::remove_const_t<W>*>(&work));
}

// How many for_each_expert calls in this process ran their experts in parallel (for tests and
// diagnostics).
int64_t expert_loops_run_in_parallel();

}  // namespace baleine::model
