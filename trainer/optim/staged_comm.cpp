#include "trainer/optim/staged_comm.h"

#include <algorithm>
#include <stdexcept>

namespace baleine::optim {

using parallel::DType;
using parallel::dtype_size;

std::vector<char>& StagedComm::stage_out(std::vector<char>& host, const void* src,
                                         size_t bytes) {
  host.resize(bytes);
  if (bytes != 0) memory_.to_host(host.data(), src, bytes);
  return host;
}

void StagedComm::stage_in(void* dst, const std::vector<char>& host, size_t bytes) {
  if (bytes != 0) memory_.from_host(dst, host.data(), bytes);
}

void StagedComm::allreduce_sum(void* data, int64_t count, DType type) {
  const size_t bytes = static_cast<size_t>(count) * dtype_size(type);
  host_.allreduce_sum(stage_out(send_, data, bytes).data(), count, type);
  stage_in(data, send_, bytes);
}

void StagedComm::reduce_scatter_sum(const void* send, void* recv, int64_t count_per_rank,
                                    DType type) {
  const size_t block = static_cast<size_t>(count_per_rank) * dtype_size(type);
  stage_out(send_, send, block * static_cast<size_t>(size()));
  recv_.resize(block);
  host_.reduce_scatter_sum(send_.data(), recv_.data(), count_per_rank, type);
  stage_in(recv, recv_, block);
}

void StagedComm::allgather(const void* send, void* recv, int64_t count_per_rank, DType type) {
  const size_t block = static_cast<size_t>(count_per_rank) * dtype_size(type);
  stage_out(send_, send, block);
  recv_.resize(block * static_cast<size_t>(size()));
  host_.allgather(send_.data(), recv_.data(), count_per_rank, type);
  stage_in(recv, recv_, recv_.size());
}

void StagedComm::alltoall(const void* send, void* recv, int64_t count_per_rank, DType type) {
  const size_t bytes = static_cast<size_t>(count_per_rank) * dtype_size(type) *
                       static_cast<size_t>(size());
  stage_out(send_, send, bytes);
  recv_.resize(bytes);
  host_.alltoall(send_.data(), recv_.data(), count_per_rank, type);
  stage_in(recv, recv_, bytes);
}

void StagedComm::alltoallv(const void* send, const int64_t* send_counts,
                           const int64_t* send_offsets, void* recv, const int64_t* recv_counts,
                           const int64_t* recv_offsets, DType type) {
  // The staged buffers span from element 0 to the end of the furthest block.
  int64_t send_end = 0, recv_end = 0;
  for (int r = 0; r < size(); ++r) {
    if (send_counts[r] > 0) send_end = std::max(send_end, send_offsets[r] + send_counts[r]);
    if (recv_counts[r] > 0) recv_end = std::max(recv_end, recv_offsets[r] + recv_counts[r]);
  }
  const size_t element = dtype_size(type);
  stage_out(send_, send, static_cast<size_t>(send_end) * element);
  // Receive into a copy of the destination, so the elements no block covers keep their values.
  stage_out(recv_, recv, static_cast<size_t>(recv_end) * element);
  host_.alltoallv(send_.data(), send_counts, send_offsets, recv_.data(), recv_counts,
                  recv_offsets, type);
  stage_in(recv, recv_, static_cast<size_t>(recv_end) * element);
}

void StagedComm::broadcast(void* data, int64_t count, DType type, int root) {
  const size_t bytes = static_cast<size_t>(count) * dtype_size(type);
  host_.broadcast(stage_out(send_, data, bytes).data(), count, type, root);
  stage_in(data, send_, bytes);
}

std::unique_ptr<parallel::Request> StagedComm::isend(const void*, int64_t, DType, int, int) {
  throw std::logic_error("StagedComm '" + name() + "': point-to-point is not staged");
}

std::unique_ptr<parallel::Request> StagedComm::irecv(void*, int64_t, DType, int, int) {
  throw std::logic_error("StagedComm '" + name() + "': point-to-point is not staged");
}

std::unique_ptr<parallel::Comm> StagedComm::split(int color, int key, const std::string& name) {
  auto host = host_.split(color, key, name);
  auto staged = std::make_unique<StagedComm>(*host, memory_);
  staged->owned_ = std::move(host);
  return staged;
}

}  // namespace baleine::optim
