#pragma once
// Gradient reduction for data parallelism, over the two regions of a ParameterStore:
//   replicated parameters: summed over the data-parallel group;
//   routed experts:        summed over the expert-data-parallel group (the ranks holding the
//                          same experts; their tokens already came from the whole EP group).
// Both are then divided by dp, so the result is the gradient of the mean loss over the global
// batch. Either all-reduced in buckets (each rank keeps full gradients) or, for ZeRO-1,
// reduce-scattered so each rank keeps only the shard it updates.
//
// The buffers live in the ParameterStore's memory (host, or a GPU's); the groups that move them
// must read that memory (NCCL groups for a GPU), while the scalars (norms) go over the host
// groups.
#include <cstdint>
#include <vector>

#include "parallel/comm.h"
#include "kernels/array.h"
#include "trainer/model/parameter_ops.h"
#include "trainer/model/parameters.h"

namespace baleine::optim {

struct DataParallelGroups {
  parallel::Comm* dp = nullptr;         // nullptr = single data-parallel rank
  parallel::Comm* ep = nullptr;
  parallel::Comm* expert_dp = nullptr;
  double bucket_mb = 25.0;
  // Pipeline parallelism: the members hold different layers, so the gradient norm sums over
  // them. DualPipe: `mirror` pairs the two pipeline ranks holding the same layers; their
  // gradients (from the two directions' micro-batches) are summed first, and the norm counts
  // each layer once.
  parallel::Comm* pp = nullptr;
  parallel::Comm* mirror = nullptr;
  // The same dp, expert_dp and mirror groups over the parameters' memory, when that is not the
  // host's (train/device_groups.h); nullptr: the host groups above move the buffers too.
  parallel::Comm* buffer_dp = nullptr;
  parallel::Comm* buffer_expert_dp = nullptr;
  parallel::Comm* buffer_mirror = nullptr;

  parallel::Comm* dp_buffers() const { return buffer_dp ? buffer_dp : dp; }
  parallel::Comm* expert_dp_buffers() const { return buffer_expert_dp ? buffer_expert_dp : expert_dp; }
  parallel::Comm* mirror_buffers() const { return buffer_mirror ? buffer_mirror : mirror; }
};

// The part of one region that this rank updates under ZeRO-1: [begin, end) in region
// coordinates; the region is padded to size·shard elements so every rank's shard is equal.
struct Shard {
  model::Region region;
  parallel::Comm* group = nullptr;  // a group that moves the parameters' buffers
  int64_t shard = 0;   // elements per rank
  int64_t begin = 0;   // this rank's first element, relative to region.offset
  int64_t end() const { return begin + shard; }
};

Shard make_shard(const model::Region& region, parallel::Comm* group);

// FP32 elements in a bucket of bucket_mb MiB (at least 1).
int64_t bucket_elements(double bucket_mb);
// All-reduce (sum) `data` over `group` in buckets of at most bucket_elements. `data` lives in
// `memory`, whose queued work is finished first (the group may read it from elsewhere).
void allreduce_in_buckets(parallel::Comm* group, kernels::Memory& memory, float* data,
                          int64_t count, int64_t bucket_elements);

// Replicated gradients over dp and expert gradients over expert_dp, then × 1/dp (with `ops`,
// the backend's of the store's memory).
void average_gradients(model::ParameterStore<float>& params, const DataParallelGroups& groups,
                       model::ParameterOps& ops);

// ZeRO-1: reduce-scatter the region's gradients over shard.group into `out` (the shard's
// averaged gradients, shard.shard elements). `padded` and `out` are in the store's memory.
void reduce_scatter_gradients(const model::ParameterStore<float>& params, const Shard& shard,
                              int64_t dp_size, model::ParameterOps& ops,
                              kernels::Array<float>& padded, kernels::Array<float>& out);
// ZeRO-1: all-gather the updated shards of a region (this rank's: shard.shard elements at
// shard_values, in the store's memory) back into every rank's parameters.
void allgather_parameters(model::ParameterStore<float>& params, const Shard& shard,
                          const float* shard_values, kernels::Array<float>& padded);

}  // namespace baleine::optim
