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
    plan.received_rows = plan.sent_rows;
    return;
  }
  const int64_t peers = group_->size(), le = local_experts_;
  for (auto* v :
       {&plan.send_counts, &plan.send_offsets, &plan.recv_counts, &plan.recv_offsets}) {
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
    const int64_t send_rows = expert_offsets[(p + 1) * le] - expert_offsets[p * le];
    int64_t recv_rows = 0;
    for (int64_t j = 0; j < le; ++j) recv_rows += plan.counts_from[p * le + j];
    plan.send_counts[p] = send_rows * dim_;
    plan.send_offsets[p] = send_at;
    plan.recv_counts[p] = recv_rows * dim_;
    plan.recv_offsets[p] = recv_at;
    send_at += plan.send_counts[p];
    recv_at += plan.recv_counts[p];
  }
  plan.received_rows = recv_at / std::max<int64_t>(dim_, 1);

  // Received rows are source-major; inside a source's block they are sorted by expert.
  for (auto& segments : plan.segments) segments.clear();
  int64_t row = 0;
  for (int64_t p = 0; p < peers; ++p) {
    for (int64_t j = 0; j < le; ++j) {
      const int64_t rows = plan.counts_from[p * le + j];
      if (rows > 0) plan.segments[j].push_back({row, rows});
      row += rows;
    }
  }
}

template <typename T>
const T* ExpertExchange<T>::dispatch(const Plan& plan, const T* rows,
                                     std::vector<T>& out) const {
  if (is_local()) return rows;
  out.resize(static_cast<size_t>(std::max<int64_t>(plan.received_rows * dim_, 1)));
  group_->alltoallv(rows, plan.send_counts.data(), plan.send_offsets.data(), out.data(),
                    plan.recv_counts.data(), plan.recv_offsets.data(), dtype_of<T>());
  return out.data();
}

template <typename T>
const T* ExpertExchange<T>::combine(const Plan& plan, const T* local,
                                    std::vector<T>& out) const {
  if (is_local()) return local;
  out.resize(static_cast<size_t>(std::max<int64_t>(plan.sent_rows * dim_, 1)));
  // The reverse exchange: what was received from peer p goes back to p.
  group_->alltoallv(local, plan.recv_counts.data(), plan.recv_offsets.data(), out.data(),
                    plan.send_counts.data(), plan.send_offsets.data(), dtype_of<T>());
  return out.data();
}

template class ExpertExchange<float>;
template class ExpertExchange<double>;

}  // namespace baleine::model
