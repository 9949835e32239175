#pragma once
// Expert parallelism's all-to-all (DeepSeek-V3 §3.2.2 dispatch/combine), on top of Comm.
//
// Each rank of an expert-parallel group of P ranks holds El = E/P routed experts: rank p holds
// experts [p·El, (p+1)·El). A rank's tokens arrive here already permuted into rows sorted by
// GLOBAL expert id (kernels/moe_dispatch.h), so the rows for rank p are one contiguous block.
//   plan():     exchange per-expert row counts (one alltoall of El counts per peer).
//   dispatch(): alltoallv the rows to their experts' ranks. They arrive source-major: all of
//               source 0's rows (expert by expert), then source 1's, ... Nothing is copied
//               again: local expert j runs over its plan.segments[j], one run of rows per source,
//               always in source order, so results do not depend on arrival order. (An
//               expert-major rearrangement cost two extra passes over the rows; see
//               bench/results.)
//   combine():  alltoallv the expert outputs back into the sender's row order.
// Backward uses the same two moves in the other roles (gradients of outputs are dispatched,
// gradients of inputs combined). A rank or an expert receiving zero rows is a normal case.
// Without a group (P = 1) every move is the identity and nothing is copied.
#include <cstdint>
#include <vector>

#include "kernels/array.h"
#include "parallel/comm.h"

namespace baleine::model {

template <typename T>
class ExpertExchange {
 public:
  ExpertExchange(parallel::Comm* group, int64_t experts, int64_t dim);

  bool is_local() const { return group_ == nullptr; }
  int64_t local_experts() const { return local_experts_; }

  struct Segment {  // a run of received rows that belong to one local expert
    int64_t first_row = 0;
    int64_t rows = 0;
  };

  // Everything plan() works out, kept until the backward has made the same moves in reverse
  // (one per micro-batch in flight, in the MoE layer's saved state).
  struct Plan {
    int64_t sent_rows = 0, received_rows = 0;
    std::vector<int64_t> send_rows, send_first;  // per peer, in rows
    std::vector<int64_t> recv_rows, recv_first;
    std::vector<int64_t> counts_to, counts_from;     // [peer][local expert] rows
    std::vector<std::vector<Segment>> segments;      // [local expert]
    // The same rows as blocks, one per source (one in all when local): source p's rows of
    // local expert j are [block_offsets[p·(El+1) + j], block_offsets[p·(El+1) + j + 1]), so
    // each block is the row offsets a grouped GEMM over the local experts takes.
    std::vector<int64_t> block_offsets;
    int64_t blocks() const {
      return static_cast<int64_t>(block_offsets.size()) / block_stride();
    }
    const int64_t* block(int64_t p) const { return block_offsets.data() + p * block_stride(); }
    int64_t block_stride() const { return static_cast<int64_t>(segments.size()) + 1; }
  };

  // expert_offsets [experts + 1]: this rank's sorted rows of global expert e are
  // [offsets[e], offsets[e+1]). Afterwards segments(j) lists where local expert j's rows will
  // be in the received buffer (plan.segments[j]), plan.received_rows how many rows arrive.
  void plan(const int32_t* expert_offsets, Plan& plan) const;

  // rows [sent rows, dim] in global-expert order → out [local_rows, dim], source-major.
  // Returns `rows` itself when local (no copy), else out.data().
  const T* dispatch(const Plan& plan, const T* rows, kernels::Array<T>& out) const;
  // local [local_rows, dim] source-major → out [sent rows, dim] in the original row order.
  const T* combine(const Plan& plan, const T* local, kernels::Array<T>& out) const;

  // The same two moves for rows of any encoding, row_bytes bytes each (BF16 or FP8 payloads,
  // model/expert_wire.h). Returns `rows` itself when local, else out.data().
  const uint8_t* dispatch_bytes(const Plan& plan, const uint8_t* rows, int64_t row_bytes,
                                kernels::Array<uint8_t>& out) const;
  const uint8_t* combine_bytes(const Plan& plan, const uint8_t* local, int64_t row_bytes,
                               kernels::Array<uint8_t>& out) const;

 private:
  // One alltoallv of whole rows, `units` elements of `type` per row; to_experts picks the
  // direction (send_rows → recv_rows, or back).
  void move(const Plan& plan, bool to_experts, const void* send, void* recv, int64_t units,
            parallel::DType type) const;

  parallel::Comm* group_;
  int64_t experts_, dim_, local_experts_;
};

}  // namespace baleine::model
