#pragma once
// The W half of a split backward. Zero-bubble pipelines (Qi et al. 2023, "Zero Bubble Pipeline
// Parallelism") and DualPipe split a layer's backward into B, the gradient with respect to its
// input (what the previous stage is waiting for), and W, the gradients of its weights (which
// nobody waits for, so a schedule may run it later to fill a bubble).
//
// A layer's backward takes a WeightGradQueue*: nullptr runs each weight-gradient GEMM at once
// (the full backward); a queue receives them as jobs instead, together with copies of the
// backward temporaries they read (kept()). Activations saved by the forward are read in place,
// so the caller must keep a micro-batch's saved state alive until its queue has run.
// Elementwise parameter gradients (norm gains) stay in B: they cost O(tokens·dim), nothing a
// schedule could use.
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "kernels/array.h"

namespace baleine::model {

template <typename T>
class WeightGradQueue {
 public:
  // A copy of n values that lives until run(): backward temporaries are overwritten by the
  // next micro-batch, so the deferred GEMM needs its own.
  const T* keep(const T* data, int64_t n) {
    kept_.emplace_back();
    kept_.back().assign_from(data, static_cast<size_t>(n));
    return kept_.back().data();
  }
  void push(std::function<void()> job) { jobs_.push_back(std::move(job)); }
  bool empty() const { return jobs_.empty(); }
  void clear() {
    jobs_.clear();
    kept_.clear();
  }

  // Runs the jobs in the order they were queued, then forgets them.
  void run() {
    for (auto& job : jobs_) job();
    clear();
  }

 private:
  std::vector<std::function<void()>> jobs_;
  std::vector<kernels::Array<T>> kept_;  // inner buffers never move when the outer one grows
};

// Where a weight-gradient job will read `data` from: in place when it runs now, a kept copy
// when it is queued.
template <typename T>
const T* kept_for_weight_grad(WeightGradQueue<T>* queue, const T* data, int64_t n) {
  return queue ? queue->keep(data, n) : data;
}

// Runs job now (queue == nullptr) or queues it.
template <typename T, typename Job>
void weight_grad(WeightGradQueue<T>* queue, Job&& job) {
  if (queue) queue->push(std::forward<Job>(job));
  else job();
}

}  // namespace baleine::model
