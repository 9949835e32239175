#include "parallel/process_groups.h"

#include <algorithm>

namespace baleine::parallel {

ProcessGroups ProcessGroups::create(const config::RunConfig& config, const ProcessInfo& process) {
  ProcessGroups g;
  g.process = process;
  const int ranks_per_node = config.parallel.ranks_per_node > 0
                                 ? static_cast<int>(config.parallel.ranks_per_node)
                                 : process.local_size;
  g.topology = Topology::build(config, process.world, ranks_per_node);
  g.world = make_mpi_world(config.parallel.timeout_s);
  const int r = process.rank;
  g.dp = g.world->split(g.topology.dp_color(r), r, "dp");
  g.ep = g.world->split(g.topology.ep_color(r), r, "ep");
  g.expert_dp = g.world->split(g.topology.expert_dp_color(r), r, "expert_dp");
  const auto& me = g.topology.placement(r);
  g.pp = g.world->split(me.dp_rank, me.stage, "pp");
  if (config.parallel.schedule == "dualpipe" && g.topology.pp() > 1) {
    const int pair = std::min(me.stage, g.topology.pp() - 1 - me.stage);
    g.mirror = g.pp->split(pair, me.stage, "mirror");
  }
  return g;
}

}  // namespace baleine::parallel
