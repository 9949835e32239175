#include "parallel/process_groups.h"

#include <algorithm>

namespace baleine::parallel {

SubGroups split_groups(Comm& world, const Topology& topology, const config::RunConfig& config) {
  SubGroups s;
  const int r = world.rank();
  s.dp = world.split(topology.dp_color(r), r, "dp");
  s.ep = world.split(topology.ep_color(r), r, "ep");
  s.expert_dp = world.split(topology.expert_dp_color(r), r, "expert_dp");
  const auto& me = topology.placement(r);
  s.pp = world.split(me.dp_rank, me.stage, "pp");
  if (config.parallel.schedule == "dualpipe" && topology.pp() > 1) {
    const int pair = std::min(me.stage, topology.pp() - 1 - me.stage);
    s.mirror = s.pp->split(pair, me.stage, "mirror");
  }
  return s;
}

ProcessGroups ProcessGroups::create(const config::RunConfig& config, const ProcessInfo& process) {
  ProcessGroups g;
  g.process = process;
  const int ranks_per_node = config.parallel.ranks_per_node > 0
                                 ? static_cast<int>(config.parallel.ranks_per_node)
                                 : process.local_size;
  g.topology = Topology::build(config, process.world, ranks_per_node);
  g.world = make_mpi_world(config.parallel.timeout_s);
  SubGroups s = split_groups(*g.world, g.topology, config);
  g.dp = std::move(s.dp);
  g.ep = std::move(s.ep);
  g.expert_dp = std::move(s.expert_dp);
  g.pp = std::move(s.pp);
  g.mirror = std::move(s.mirror);
  return g;
}

}  // namespace baleine::parallel
