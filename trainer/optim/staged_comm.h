#pragma once
// A Comm (parallel/comm.h) for buffers in a memory that the wrapped group cannot read: every
// collective copies its input to the host, runs on the host group (MPI), and copies the result
// back. The way gradients and ZeRO shards cross ranks when the model's memory is not the host's
// and no device-native group exists (a GPU build without NCCL between these ranks, and the
// tests' stand-in device memory); NCCL groups are the fast path (train/device_groups.h).
//
// Point-to-point is refused (std::logic_error): its buffers would have to stay staged until
// the request completes, and nothing sends parameter buffers point to point.
#include <memory>
#include <string>

#include "kernels/memory.h"
#include "parallel/comm.h"

namespace baleine::optim {

class StagedComm final : public parallel::Comm {
 public:
  // `host` does the communication and must outlive this; `memory` holds every buffer passed in.
  StagedComm(parallel::Comm& host, kernels::Memory& memory) : host_(host), memory_(memory) {}

  const std::string& name() const override { return host_.name(); }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  const std::vector<int>& world_ranks() const override { return host_.world_ranks(); }
  uint64_t sequence() const override { return host_.sequence(); }

  void allreduce_sum(void* data, int64_t count, parallel::DType type) override;
  void reduce_scatter_sum(const void* send, void* recv, int64_t count_per_rank,
                          parallel::DType type) override;
  void allgather(const void* send, void* recv, int64_t count_per_rank,
                 parallel::DType type) override;
  void alltoall(const void* send, void* recv, int64_t count_per_rank,
                parallel::DType type) override;
  void alltoallv(const void* send, const int64_t* send_counts, const int64_t* send_offsets,
                 void* recv, const int64_t* recv_counts, const int64_t* recv_offsets,
                 parallel::DType type) override;
  void broadcast(void* data, int64_t count, parallel::DType type, int root) override;
  void barrier() override { host_.barrier(); }
  std::unique_ptr<parallel::Request> isend(const void* data, int64_t count, parallel::DType type,
                                           int peer, int tag) override;
  std::unique_ptr<parallel::Request> irecv(void* data, int64_t count, parallel::DType type,
                                           int peer, int tag) override;
  // The new host group is owned by the returned comm.
  std::unique_ptr<parallel::Comm> split(int color, int key, const std::string& name) override;

 private:
  // Host copies of `bytes` at `src` (memory_) and back.
  std::vector<char>& stage_out(std::vector<char>& host, const void* src, size_t bytes);
  void stage_in(void* dst, const std::vector<char>& host, size_t bytes);

  parallel::Comm& host_;
  kernels::Memory& memory_;
  std::unique_ptr<parallel::Comm> owned_;  // the host group of a split, when this made it
  std::vector<char> send_, recv_;          // staging, reused across calls
};

}  // namespace baleine::optim
