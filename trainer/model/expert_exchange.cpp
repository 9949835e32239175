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
  segments_.assign(static_cast<size_t>(local_experts_), {});
  for (auto* v : {&send_counts_, &send_offsets_, &recv_counts_, &recv_offsets_}) {
    v->assign(peers, 0);
  }
  counts_to_.assign(peers * local_experts_, 0);
  counts_from_.assign(peers * local_experts_, 0);
}

template <typename T>
void ExpertExchange<T>::plan(const int32_t* expert_offsets) {
  sent_rows_ = expert_offsets[experts_];
  if (is_local()) {
    for (int64_t e = 0; e < experts_; ++e) {
      segments_[e].assign(1, {expert_offsets[e], expert_offsets[e + 1] - expert_offsets[e]});
    }
    received_rows_ = sent_rows_;
    return;
  }
  const int64_t peers = group_->size(), le = local_experts_;
  for (int64_t e = 0; e < experts_; ++e) counts_to_[e] = expert_offsets[e + 1] - expert_offsets[e];
  group_->alltoall(counts_to_.data(), counts_from_.data(), le, parallel::DType::kInt64);

  int64_t send_at = 0, recv_at = 0;
  for (int64_t p = 0; p < peers; ++p) {
    const int64_t send_rows = expert_offsets[(p + 1) * le] - expert_offsets[p * le];
    int64_t recv_rows = 0;
    for (int64_t j = 0; j < le; ++j) recv_rows += counts_from_[p * le + j];
    send_counts_[p] = send_rows * dim_;
    send_offsets_[p] = send_at;
    recv_counts_[p] = recv_rows * dim_;
    recv_offsets_[p] = recv_at;
    send_at += send_counts_[p];
    recv_at += recv_counts_[p];
  }
  received_rows_ = recv_at / std::max<int64_t>(dim_, 1);

  // Received rows are source-major; inside a source's block they are sorted by expert.
  for (auto& segments : segments_) segments.clear();
  int64_t row = 0;
  for (int64_t p = 0; p < peers; ++p) {
    for (int64_t j = 0; j < le; ++j) {
      const int64_t rows = counts_from_[p * le + j];
      if (rows > 0) segments_[j].push_back({row, rows});
      row += rows;
    }
  }
}

template <typename T>
const T* ExpertExchange<T>::dispatch(const T* rows, std::vector<T>& out) {
  if (is_local()) return rows;
  out.resize(static_cast<size_t>(std::max<int64_t>(received_rows_ * dim_, 1)));
  group_->alltoallv(rows, send_counts_.data(), send_offsets_.data(), out.data(),
                    recv_counts_.data(), recv_offsets_.data(), dtype_of<T>());
  return out.data();
}

template <typename T>
const T* ExpertExchange<T>::combine(const T* local, std::vector<T>& out) {
  if (is_local()) return local;
  out.resize(static_cast<size_t>(std::max<int64_t>(sent_rows_ * dim_, 1)));
  // The reverse exchange: what was received from peer p goes back to p.
  group_->alltoallv(local, recv_counts_.data(), recv_offsets_.data(), out.data(),
                    send_counts_.data(), send_offsets_.data(), dtype_of<T>());
  return out.data();
}

template class ExpertExchange<float>;
template class ExpertExchange<double>;

}  // namespace baleine::model
