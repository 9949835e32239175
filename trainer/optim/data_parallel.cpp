#include "trainer/optim/data_parallel.h"

#include <algorithm>

namespace baleine::optim {

using parallel::DType;

Shard make_shard(const model::Region& region, parallel::Comm* group) {
  Shard s;
  s.region = region;
  s.group = group;
  const int64_t ranks = group ? group->size() : 1;
  s.shard = (region.size + ranks - 1) / ranks;
  s.begin = (group ? group->rank() : 0) * s.shard;
  return s;
}

int64_t bucket_elements(double bucket_mb) {
  return std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024 / sizeof(float)));
}

void allreduce_in_buckets(parallel::Comm* group, float* data, int64_t count,
                          int64_t bucket_elements) {
  if (!group || group->size() == 1) return;
  for (int64_t at = 0; at < count; at += bucket_elements) {
    group->allreduce_sum(data + at, std::min(bucket_elements, count - at), DType::kFloat32);
  }
}

void average_gradients(model::ParameterStore<float>& params, const DataParallelGroups& groups) {
  if (!groups.dp || groups.dp->size() == 1) return;
  const int64_t bucket = bucket_elements(groups.bucket_mb);
  const auto replicated = params.region(model::Placement::kReplicated);
  const auto experts = params.region(model::Placement::kExpert);
  float* grads = params.grads().data();
  allreduce_in_buckets(groups.dp, grads + replicated.offset, replicated.size, bucket);
  allreduce_in_buckets(groups.expert_dp, grads + experts.offset, experts.size, bucket);
  const float scale = 1.0f / static_cast<float>(groups.dp->size());
  for (float& g : params.grads()) g *= scale;
}

void reduce_scatter_gradients(const model::ParameterStore<float>& params, const Shard& shard,
                              int64_t dp_size, std::vector<float>& padded,
                              std::vector<float>& out) {
  const int64_t ranks = shard.group ? shard.group->size() : 1;
  padded.assign(static_cast<size_t>(shard.shard * ranks), 0.0f);
  std::copy_n(params.grads().data() + shard.region.offset, shard.region.size, padded.data());
  out.resize(static_cast<size_t>(shard.shard));
  if (ranks > 1) {
    shard.group->reduce_scatter_sum(padded.data(), out.data(), shard.shard, DType::kFloat32);
  } else {
    std::copy_n(padded.data(), shard.shard, out.data());
  }
  const float scale = 1.0f / static_cast<float>(dp_size);
  for (float& g : out) g *= scale;
}

void allgather_parameters(model::ParameterStore<float>& params, const Shard& shard,
                          const float* shard_values, std::vector<float>& padded) {
  const int64_t ranks = shard.group ? shard.group->size() : 1;
  padded.resize(static_cast<size_t>(shard.shard * ranks));
  if (ranks > 1) {
    shard.group->allgather(shard_values, padded.data(), shard.shard, DType::kFloat32);
  } else {
    std::copy_n(shard_values, shard.shard, padded.data());
  }
  std::copy_n(padded.data(), shard.region.size, params.values().data() + shard.region.offset);
}

}  // namespace baleine::optim
