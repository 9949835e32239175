#include "trainer/model/expert_exchange.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace baleine::model {

namespace {
template <typename T>
parallel::DType dtype_of() {
  return std::is_same_v<T, double> ? parallel::DType::kFloat64 : parallel::DType::kFloat32;
}
}  // namespace

template <typename T>
ExpertExchange<T>::ExpertExchange(parallel::Comm* group, int64_t experts, int64_t dim)
    : group_(group && group->size() > 1 ? group : nullptr), experts_(experts), dim_(dim) {
  const int64_t peers = group_ ? group_->size() : 1;
  if (experts % peers != 0) {
    throw std::invalid_argument("ExpertExchange: " + std::to_string(experts) +
                                " experts do not split over " + std::to_string(peers) + " ranks");
  }
  local_experts_ = experts / peers;
}

template <typename T>
void ExpertExchange<T>::plan(const int32_t* expert_offsets, Plan& plan) const {
  plan.sent_rows = expert_offsets[experts_];
  plan.segments.resize(static_cast<size_t>(local_experts_));
  if (is_local()) {
    for (int64_t e = 0; e < experts_; ++e) {
      plan.segments[e].assign(1,
                               {expert_offsets[e], expert_offsets[e + 1] - expert_offsets[e]});
    }
    plan.block_offsets.assign(expert_offsets, expert_offsets + experts_ + 1);
    plan.received_rows = plan.sent_rows;
    return;
  }
  const int64_t peers = group_->size(), le = local_experts_;
  for (auto* v : {&plan.send_rows, &plan.send_first, &plan.recv_rows, &plan.recv_first}) {
    v->assign(peers, 0);
  }
  plan.counts_to.assign(peers * le, 0);
  plan.counts_from.assign(peers * le, 0);
  for (int64_t e = 0; e < experts_; ++e) {
    plan.counts_to[e] = expert_offsets[e + 1] - expert_offsets[e];
  }
  group_->alltoall(plan.counts_to.data(), plan.counts_from.data(), le, parallel::DType::kInt64);

  int64_t send_at = 0, recv_at = 0;
  for (int64_t p = 0; p < peers; ++p) {
    plan.send_rows[p] = expert_offsets[(p + 1) * le] - expert_offsets[p * le];
    for (int64_t j = 0; j < le; ++j) plan.recv_rows[p] += plan.counts_from[p * le + j];
    plan.send_first[p] = send_at;
    plan.recv_first[p] = recv_at;
    send_at += plan.send_rows[p];
    recv_at += plan.recv_rows[p];
  }
  plan.received_rows = recv_at;

  // Received rows are source-major; inside a source's block they are sorted by expert.
  for (auto& segments : plan.segments) segments.clear();
  plan.block_offsets.resize(static_cast<size_t>(peers * (le + 1)));
  int64_t row = 0;
  for (int64_t p = 0; p < peers; ++p) {
    for (int64_t j = 0; j < le; ++j) {
      const int64_t rows = plan.counts_from[p * le + j];
      if (rows > 0) plan.segments[j].push_back({row, rows});
      plan.block_offsets[p * (le + 1) + j] = row;
      row += rows;
    }
    plan.block_offsets[p * (le + 1) + le] = row;
  }
}

template <typename T>
void ExpertExchange<T>::move(const Plan& plan, bool to_experts, const void* send, void* recv,
                             int64_t units, parallel::DType type) const {
  const int64_t peers = group_->size();
  std::vector<int64_t> counts[4];  // send counts, send offsets, receive counts, receive offsets
  const std::vector<int64_t>* rows[4] = {&plan.send_rows, &plan.send_first, &plan.recv_rows,
                                         &plan.recv_first};
  if (!to_experts) {  // the reverse exchange: what was received from peer p goes back to p
    std::swap(rows[0], rows[2]);
    std::swap(rows[1], rows[3]);
  }
  for (int i = 0; i < 4; ++i) {
    counts[i].resize(static_cast<size_t>(peers));
    for (int64_t p = 0; p < peers; ++p) counts[i][p] = (*rows[i])[p] * units;
  }
  kernels::Memory& memory = kernels::current_memory();
  if (memory.is_host()) {
    group_->alltoallv(send, counts[0].data(), counts[1].data(), recv, counts[2].data(),
                      counts[3].data(), type);
    return;
  }
  // Rows in device memory travel through host copies (the MPI path; NCCL's all-to-all on
  // device buffers is parallel/cuda's).
  const size_t unit = parallel::dtype_size(type);
  int64_t send_units = 0, recv_units = 0;
  for (int64_t p = 0; p < peers; ++p) {
    send_units = std::max(send_units, counts[1][p] + counts[0][p]);
    recv_units = std::max(recv_units, counts[3][p] + counts[2][p]);
  }
  std::vector<uint8_t> host_send(static_cast<size_t>(send_units) * unit);
  std::vector<uint8_t> host_recv(static_cast<size_t>(recv_units) * unit);
  memory.to_host(host_send.data(), send, host_send.size());
  group_->alltoallv(host_send.data(), counts[0].data(), counts[1].data(), host_recv.data(),
                    counts[2].data(), counts[3].data(), type);
  memory.from_host(recv, host_recv.data(), host_recv.size());
}

template <typename T>
const T* ExpertExchange<T>::dispatch(const Plan& plan, const T* rows,
                                     kernels::Array<T>& out) const {
  if (is_local()) return rows;
  out.resize(static_cast<size_t>(std::max<int64_t>(plan.received_rows * dim_, 1)));
  move(plan, true, rows, out.data(), dim_, dtype_of<T>());
  return out.data();
}

template <typename T>
const T* ExpertExchange<T>::combine(const Plan& plan, const T* local,
                                    kernels::Array<T>& out) const {
  if (is_local()) return local;
  out.resize(static_cast<size_t>(std::max<int64_t>(plan.sent_rows * dim_, 1)));
  move(plan, false, local, out.data(), dim_, dtype_of<T>());
  return out.data();
}

template <typename T>
const uint8_t* ExpertExchange<T>::dispatch_bytes(const Plan& plan, const uint8_t* rows,
                                                 int64_t row_bytes,
                                                 kernels::Array<uint8_t>& out) const {
  if (is_local()) return rows;
  out.resize(static_cast<size_t>(std::max<int64_t>(plan.received_rows * row_bytes, 1)));
  move(plan, true, rows, out.data(), row_bytes, parallel::DType::kByte);
  return out.data();
}

template <typename T>
const uint8_t* ExpertExchange<T>::combine_bytes(const Plan& plan, const uint8_t* local,
                                                int64_t row_bytes,
                                                kernels::Array<uint8_t>& out) const {
  if (is_local()) return local;
  out.resize(static_cast<size_t>(std::max<int64_t>(plan.sent_rows * row_bytes, 1)));
  move(plan, false, local, out.data(), row_bytes, parallel::DType::kByte);
  return out.data();
}

template class ExpertExchange<float>;
template class ExpertExchange<double>;

}  // namespace baleine::model
