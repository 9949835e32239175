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

void allreduce_in_buckets(parallel::Comm* group, kernels::Memory& memory, float* data,
                          int64_t count, int64_t bucket_elements) {
  if (!group || group->size() == 1) return;
  memory.synchronize();
  for (int64_t at = 0; at < count; at += bucket_elements) {
    group->allreduce_sum(data + at, std::min(bucket_elements, count - at), DType::kFloat32);
  }
}

void average_gradients(model::ParameterStore<float>& params, const DataParallelGroups& groups,
                       model::ParameterOps& ops) {
  if (!groups.dp || groups.dp->size() == 1) return;
  const int64_t bucket = bucket_elements(groups.bucket_mb);
  const auto replicated = params.region(model::Placement::kReplicated);
  const auto experts = params.region(model::Placement::kExpert);
  kernels::Array<float>& grads = params.grads();
  allreduce_in_buckets(groups.dp_buffers(), grads.memory(), grads.data() + replicated.offset,
                       replicated.size, bucket);
  allreduce_in_buckets(groups.expert_dp_buffers(), grads.memory(), grads.data() + experts.offset,
                       experts.size, bucket);
  ops.scale(grads.data(), 1.0f / static_cast<float>(groups.dp->size()),
            static_cast<int64_t>(grads.size()));
}

void reduce_scatter_gradients(const model::ParameterStore<float>& params, const Shard& shard,
                              int64_t dp_size, model::ParameterOps& ops,
                              kernels::Array<float>& padded, kernels::Array<float>& out) {
  const int64_t ranks = shard.group ? shard.group->size() : 1;
  const kernels::Array<float>& grads = params.grads();
  kernels::Memory& memory = grads.memory();
  padded.assign(static_cast<size_t>(shard.shard * ranks), 0.0f);
  memory.copy(padded.data(), grads.data() + shard.region.offset,
              static_cast<size_t>(shard.region.size) * sizeof(float));
  out.resize(static_cast<size_t>(shard.shard));
  if (ranks > 1) {
    memory.synchronize();
    shard.group->reduce_scatter_sum(padded.data(), out.data(), shard.shard, DType::kFloat32);
  } else {
    memory.copy(out.data(), padded.data(), static_cast<size_t>(shard.shard) * sizeof(float));
  }
  ops.scale(out.data(), 1.0f / static_cast<float>(dp_size), shard.shard);
}

void allgather_parameters(model::ParameterStore<float>& params, const Shard& shard,
                          const float* shard_values, kernels::Array<float>& padded) {
  const int64_t ranks = shard.group ? shard.group->size() : 1;
  kernels::Array<float>& values = params.values();
  kernels::Memory& memory = values.memory();
  padded.resize(static_cast<size_t>(shard.shard * ranks));
  if (ranks > 1) {
    memory.synchronize();
    shard.group->allgather(shard_values, padded.data(), shard.shard, DType::kFloat32);
  } else {
    memory.copy(padded.data(), shard_values, static_cast<size_t>(shard.shard) * sizeof(float));
  }
  memory.copy(values.data() + shard.region.offset, padded.data(),
              static_cast<size_t>(shard.region.size) * sizeof(float));
}

}  // namespace baleine::optim
