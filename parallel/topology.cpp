#include "parallel/topology.h"

#include <sstream>

#include "trainer/errors.h"

namespace baleine::parallel {

Topology Topology::build(const config::RunConfig& c, int world, int ranks_per_node) {
  const auto& p = c.parallel;
  if (world != p.pp * p.dp) {
    throw UserError(c.where("parallel.dp"), "parallel",
                    "the job has " + std::to_string(world) +
                        " processes but parallel.pp x parallel.dp = " + std::to_string(p.pp) +
                        " x " + std::to_string(p.dp) + " = " + std::to_string(p.pp * p.dp),
                    "launch with mpirun -np " + std::to_string(p.pp * p.dp) +
                        ", or set parallel.dp: " + std::to_string(world / p.pp > 0 ? world / p.pp : 1) +
                        " for " + std::to_string(world) + " processes");
  }
  Topology t;
  t.world_ = world;
  t.pp_ = static_cast<int>(p.pp);
  t.dp_ = static_cast<int>(p.dp);
  t.ep_ = static_cast<int>(p.ep);
  t.ranks_per_node_ = ranks_per_node > 0 ? ranks_per_node : world;
  t.has_moe_ = c.model.layers > c.model.dense_layers;
  t.experts_per_rank_ = c.model.moe.routed_experts / p.ep;
  for (int r = 0; r < world; ++r) {
    RankPlacement pl;
    pl.rank = r;
    pl.stage = r / t.dp_;
    pl.dp_rank = r % t.dp_;
    pl.ep_group = pl.dp_rank / t.ep_;
    pl.ep_rank = pl.dp_rank % t.ep_;
    pl.node = r / t.ranks_per_node_;
    pl.expert_begin = pl.ep_rank * t.experts_per_rank_;
    pl.expert_end = pl.expert_begin + t.experts_per_rank_;
    t.ranks_.push_back(pl);
  }
  return t;
}

std::vector<int> Topology::dp_group(int rank) const {
  std::vector<int> g;
  const int first = ranks_[rank].stage * dp_;
  for (int i = 0; i < dp_; ++i) g.push_back(first + i);
  return g;
}

std::vector<int> Topology::ep_group(int rank) const {
  std::vector<int> g;
  const int first = ranks_[rank].stage * dp_ + ranks_[rank].ep_group * ep_;
  for (int i = 0; i < ep_; ++i) g.push_back(first + i);
  return g;
}

std::vector<int> Topology::expert_dp_group(int rank) const {
  std::vector<int> g;
  const int first = ranks_[rank].stage * dp_ + ranks_[rank].ep_rank;
  for (int i = 0; i < dp_ / ep_; ++i) g.push_back(first + i * ep_);
  return g;
}

namespace {
std::string list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? "," : "") + std::to_string(ranks[i]);
  return s;
}
}  // namespace

std::string Topology::describe() const {
  std::ostringstream out;
  out << "topology: world " << world_ << " = pp " << pp_ << " x dp " << dp_ << "; ep " << ep_
      << " (" << dp_ / ep_ << " expert-parallel group(s) per stage, each expert on " << dp_ / ep_
      << " rank(s))\n";
  for (const auto& pl : ranks_) {
    out << "  rank " << pl.rank << ": node " << pl.node << ", stage " << pl.stage << ", dp "
        << pl.dp_rank << "/" << dp_ << ", ep group " << pl.ep_group << " rank " << pl.ep_rank
        << "/" << ep_;
    if (has_moe_) {
      out << ", experts " << pl.expert_begin << ".." << pl.expert_end - 1 << " (expert-dp ["
          << list(expert_dp_group(pl.rank)) << "])";
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace baleine::parallel
