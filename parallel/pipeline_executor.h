#pragma once
// Runs one rank's pipeline op list (parallel/schedule.h) on real tensors. The model side is
// behind StageWork, so the executor knows ops, buffers and transfers, and nothing of layers.
//
// Transfers: every receive this rank will make in the step is posted before the first compute
// op (non-blocking, distinct tag per (kind, direction, stage, micro-batch)); a compute op waits
// only for the receive it needs. Sends are posted at their place in the op list and completed
// by the end of the step. A hand-off between two stages held by the SAME rank (DualPipeV's
// bottom of the V) never touches the Comm: the producer's output buffer is the consumer's
// input. F&B runs its forward, then its backward (one after the other on CPU).
//
// Timing: busy = Σ wall time inside StageWork calls; bubble = step wall time − busy (waits for
// receives and the final send completion). EP all-to-alls inside a stage count as busy.
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/comm.h"
#include "parallel/schedule.h"

namespace baleine::parallel {

// The model side of one rank. Tensors crossing a stage boundary (activations going forward,
// their gradients going back) are float arrays of boundary_elements() each.
class StageWork {
 public:
  virtual ~StageWork() = default;
  virtual int64_t boundary_elements() const = 0;
  // input: nullptr on a model's first stage (it reads tokens itself).
  // output: nullptr on a model's last stage (it computes the loss itself).
  virtual void forward(const StageRef& stage, int micro_batch, const float* input,
                       float* output) = 0;
  // Backward of an earlier forward. grad_output: nullptr on the last stage. grad_input:
  // nullptr on the first stage. split: compute input gradients only; the weight gradients
  // follow in backward_weight() (a W op). !split: both now.
  virtual void backward(const StageRef& stage, int micro_batch, const float* grad_output,
                        float* grad_input, bool split) = 0;
  virtual void backward_weight(const StageRef& stage, int micro_batch) = 0;
};

struct PipelineTiming {
  double wall_s = 0;  // from the start of run() to its end on this rank
  double busy_s = 0;  // inside StageWork calls
  double bubble_s() const { return wall_s - busy_s; }
};

class PipelineExecutor {
 public:
  // group: the pipeline group; its group rank r runs schedule.ops[r]. group->size() must equal
  // schedule.ranks (std::invalid_argument otherwise). group may be nullptr when ranks == 1.
  PipelineExecutor(const Schedule& schedule, Comm* group);
  ~PipelineExecutor();  // out of line: State is complete only in pipeline_executor.cpp

  // Executes this rank's op list once (one optimizer step's micro-batches).
  PipelineTiming run(StageWork& work);

 private:
  struct State;  // the buffer pool and the per-step transfer bookkeeping
  Schedule schedule_;
  Comm* group_;
  int rank_;
  std::unique_ptr<State> state_;
};

// A forward-only op list for validation, derived from a training schedule's placement: for
// every micro-batch in order, every rank runs the forward of each stage it holds (direction 0,
// ascending stage order), receiving its input from the previous stage's rank and sending its
// output to the next stage's rank when they differ. No B/W ops. Run it with
// PipelineExecutor(forward_only_schedule(s, m), group).run(work).
Schedule forward_only_schedule(const Schedule& training, int micro_batches);

}  // namespace baleine::parallel
