#pragma once
// Which rank holds what. Pure data, built from the config and the world size alone, so it can
// be printed and tested for any world size without starting MPI.
//
// Rank order: rank = stage · dp + dp_rank (data-parallel ranks of a stage are contiguous), and
// inside a stage the expert-parallel groups are contiguous blocks of ep ranks:
//   ep_group = dp_rank / ep, ep_rank = dp_rank % ep.
// With ranks numbered node by node (mpirun and srun's default block placement), an EP group
// therefore stays inside one node whenever ep divides the ranks per node: the all-to-all runs
// over the fast intra-node links first. The expert-data-parallel group of a rank is the set of
// ranks of its stage that hold the same experts (same ep_rank); expert gradients are averaged
// over it, all other gradients over the whole data-parallel group.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config/config.h"

namespace baleine::parallel {

struct RankPlacement {
  int rank = 0;
  int stage = 0;        // pipeline stage
  int dp_rank = 0;      // index in the data-parallel group
  int ep_group = 0;     // which expert-parallel group of the stage
  int ep_rank = 0;      // index in the expert-parallel group
  int node = 0;         // rank / ranks_per_node
  int64_t expert_begin = 0, expert_end = 0;  // routed experts held: [begin, end)
};

class Topology {
 public:
  // Throws UserError (exit 2) when world != pp × dp, naming the config keys and the
  // arithmetic. The per-key rules (ep divides dp, ...) are checked by the config loader.
  static Topology build(const config::RunConfig& config, int world, int ranks_per_node);

  int world() const { return world_; }
  int pp() const { return pp_; }
  int dp() const { return dp_; }
  int ep() const { return ep_; }
  int64_t experts_per_rank() const { return experts_per_rank_; }
  const RankPlacement& placement(int rank) const { return ranks_[rank]; }

  // Group members as world ranks, in group-rank order.
  std::vector<int> dp_group(int rank) const;
  std::vector<int> ep_group(int rank) const;
  std::vector<int> expert_dp_group(int rank) const;
  // Colors for Comm::split: equal color = same group.
  int dp_color(int rank) const { return ranks_[rank].stage; }
  int ep_color(int rank) const { return ranks_[rank].stage * (dp_ / ep_) + ranks_[rank].ep_group; }
  int expert_dp_color(int rank) const { return ranks_[rank].stage * ep_ + ranks_[rank].ep_rank; }

  // The table printed at start: one line per rank (what it holds) and a summary line.
  std::string describe() const;

 private:
  int world_ = 1, pp_ = 1, dp_ = 1, ep_ = 1, ranks_per_node_ = 1;
  int64_t experts_per_rank_ = 0;
  bool has_moe_ = false;
  std::vector<RankPlacement> ranks_;
};

}  // namespace baleine::parallel
