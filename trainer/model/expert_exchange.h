#pragma once
// Expert parallelism's all-to-all (DeepSeek-V3 §3.2.2 dispatch/combine), on top of Comm.
//
// Each rank of an expert-parallel group of P ranks holds El = E/P routed experts: rank p holds
// experts [p·El, (p+1)·El). A rank's tokens arrive here already permuted into rows sorted by
// GLOBAL expert id (kernels/moe_dispatch.h), so the rows for rank p are one contiguous block.
//   plan():     exchange per-expert row counts (one alltoall of El counts per peer).
//   dispatch(): alltoallv the rows to their experts' ranks, then rearrange the received rows
//               from source-major (all of source 0's rows, then source 1's, ...) to
//               expert-major, so each local expert sees one contiguous slice ordered by
//               (source rank, token): the same order on every run, whatever the arrival order.
//   combine():  the exact reverse: expert-major → source-major, alltoallv back into the sender's
//               row order.
// Backward uses the same two moves in the other roles (gradients of outputs are dispatched,
// gradients of inputs combined). A rank or an expert receiving zero rows is a normal case.
// Without a group (P = 1) every move is the identity and nothing is copied.
#include <cstdint>
#include <vector>

#include "parallel/comm.h"

namespace baleine::model {

template <typename T>
class ExpertExchange {
 public:
  ExpertExchange(parallel::Comm* group, int64_t experts, int64_t dim);

  bool is_local() const { return group_ == nullptr; }
  int64_t local_experts() const { return local_experts_; }

  // expert_offsets [experts + 1]: this rank's sorted rows of global expert e are
  // [offsets[e], offsets[e+1]). Afterwards local_offsets() [local_experts + 1] describes the
  // expert-major rows this rank's experts will receive.
  void plan(const int32_t* expert_offsets);
  const std::vector<int64_t>& local_offsets() const { return local_offsets_; }
  int64_t local_rows() const { return local_offsets_.back(); }
  int64_t rows_received() const { return received_rows_; }  // from every source, this step

  // rows [sent rows, dim] in global-expert order → out [local_rows, dim] in expert-major order.
  // Returns `rows` itself when local (no copy), else out.data().
  const T* dispatch(const T* rows, std::vector<T>& out);
  // local [local_rows, dim] expert-major → out [sent rows, dim] in the original row order.
  const T* combine(const T* local, std::vector<T>& out);

 private:
  struct Block {          // one (source, local expert) run of rows
    int64_t source_major;  // first row in the source-major receive buffer
    int64_t expert_major;  // first row in the expert-major buffer
    int64_t rows;
  };
  void rearrange(const T* from, T* to, bool to_expert_major) const;

  parallel::Comm* group_;
  int64_t experts_, dim_, local_experts_;
  int64_t sent_rows_ = 0, received_rows_ = 0;
  std::vector<int64_t> local_offsets_;
  std::vector<int64_t> send_rows_, recv_rows_;              // per peer, in rows
  std::vector<int64_t> send_counts_, send_offsets_;         // per peer, in elements
  std::vector<int64_t> recv_counts_, recv_offsets_;
  std::vector<int64_t> counts_to_, counts_from_;            // [peer][local expert] rows
  std::vector<Block> blocks_;
  std::vector<T> staging_;                                  // source-major rows
};

}  // namespace baleine::model
