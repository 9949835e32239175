#pragma once
// The topology of a run and the communication groups cut from the world to match it:
// data-parallel (dp), expert-parallel (ep), expert-data-parallel (expert_dp), pipeline (pp: the
// ranks of one data-parallel replica, group rank = stage) and, under DualPipe, mirror (the two
// pipeline ranks r and pp−1−r that hold the same layers).
#include <memory>

#include "parallel/comm.h"
#include "parallel/runtime.h"
#include "parallel/topology.h"
#include "trainer/config/config.h"

namespace baleine::parallel {

// The groups cut from one world (MPI's, or NCCL's over the same ranks): dp, ep, expert_dp, pp
// and, under DualPipe, mirror (else nullptr). Collective over `world`.
struct SubGroups {
  std::unique_ptr<Comm> dp, ep, expert_dp, pp, mirror;
};
SubGroups split_groups(Comm& world, const Topology& topology, const config::RunConfig& config);

struct ProcessGroups {
  ProcessInfo process;
  Topology topology;
  std::unique_ptr<Comm> world, dp, ep, expert_dp, pp;
  std::unique_ptr<Comm> mirror;  // DualPipe only, else nullptr

  // Validates the world against the config (UserError, exit 2) and splits the groups; every
  // rank must call it. ranks_per_node: parallel.ranks_per_node, or MPI's node size when 0.
  static ProcessGroups create(const config::RunConfig& config, const ProcessInfo& process);

  int rank() const { return process.rank; }
  bool is_root() const { return process.rank == 0; }
  const RankPlacement& placement() const { return topology.placement(process.rank); }
};

}  // namespace baleine::parallel
