// The rank layout, for many world sizes, without MPI: every group is a partition, colors agree
// with group membership, every EP group holds every expert exactly once, and a world that does
// not match the config fails with the arithmetic.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "parallel/runtime.h"
#include "parallel/topology.h"
#include "trainer/errors.h"

namespace baleine::parallel {
namespace {

config::RunConfig layout(int64_t dp, int64_t ep, int64_t experts = 16) {
  config::RunConfig c;
  c.parallel.dp = dp;
  c.parallel.ep = ep;
  c.model.layers = 2;
  c.model.dense_layers = 1;
  c.model.moe.routed_experts = experts;
  return c;
}

// Groups produced by `group_of` partition the world, and `color_of` names them consistently.
template <typename GroupOf, typename ColorOf>
void expect_partition(const Topology& t, GroupOf group_of, ColorOf color_of, size_t size) {
  std::map<int, std::vector<int>> by_color;
  for (int r = 0; r < t.world(); ++r) by_color[color_of(r)].push_back(r);
  for (int r = 0; r < t.world(); ++r) {
    const auto g = group_of(r);
    EXPECT_EQ(g.size(), size);
    EXPECT_EQ(g, by_color[color_of(r)]) << "rank " << r;
  }
}

TEST(Topology, EveryLayoutPartitionsTheWorld) {
  for (int64_t dp : {1, 2, 3, 4, 6, 8, 16, 64}) {
    for (int64_t ep = 1; ep <= dp; ++ep) {
      if (dp % ep != 0 || 64 % ep != 0) continue;
      SCOPED_TRACE("dp " + std::to_string(dp) + " ep " + std::to_string(ep));
      const auto t = Topology::build(layout(dp, ep, 64), static_cast<int>(dp), 8);
      expect_partition(t, [&](int r) { return t.dp_group(r); },
                       [&](int r) { return t.dp_color(r); }, dp);
      expect_partition(t, [&](int r) { return t.ep_group(r); },
                       [&](int r) { return t.ep_color(r); }, ep);
      expect_partition(t, [&](int r) { return t.expert_dp_group(r); },
                       [&](int r) { return t.expert_dp_color(r); }, dp / ep);
      for (int r = 0; r < t.world(); ++r) {
        const auto& pl = t.placement(r);
        // EP groups are contiguous ranks; the member's index is its ep_rank.
        const auto g = t.ep_group(r);
        EXPECT_EQ(g[pl.ep_rank], r);
        for (size_t i = 1; i < g.size(); ++i) EXPECT_EQ(g[i], g[i - 1] + 1);
        // Every EP group holds each expert exactly once; its expert-dp peers hold the same.
        std::set<int64_t> experts;
        for (int member : g) {
          for (int64_t e = t.placement(member).expert_begin; e < t.placement(member).expert_end; ++e) {
            EXPECT_TRUE(experts.insert(e).second) << "expert " << e << " twice";
          }
        }
        EXPECT_EQ(experts.size(), 64u);
        for (int peer : t.expert_dp_group(r)) {
          EXPECT_EQ(t.placement(peer).expert_begin, pl.expert_begin);
        }
      }
    }
  }
}

TEST(Topology, EpGroupsStayInsideANodeWhenEpDividesTheNode) {
  const auto t = Topology::build(layout(16, 4), 16, 8);
  for (int r = 0; r < 16; ++r) {
    for (int member : t.ep_group(r)) EXPECT_EQ(t.placement(member).node, t.placement(r).node);
  }
}

TEST(Topology, WorldMismatchShowsTheArithmetic) {
  auto c = layout(4, 2);
  c.source = "run.yaml";
  try {
    Topology::build(c, 6, 6);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("the job has 6 processes but parallel.pp x parallel.dp "
                                         "= 1 x 4 = 4"),
              std::string::npos)
        << e.what();
    EXPECT_NE(e.hint().find("mpirun -np 4"), std::string::npos) << e.hint();
  }
}

TEST(Topology, DescribeListsEveryRank) {
  const auto t = Topology::build(layout(4, 2, 8), 4, 4);
  const std::string text = t.describe();
  EXPECT_NE(text.find("world 4 = pp 1 x dp 4; ep 2"), std::string::npos) << text;
  EXPECT_NE(text.find("rank 3: node 0, stage 0, dp 3/4, ep group 1 rank 1/2, experts 4..7 "
                      "(expert-dp [1,3])"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace baleine::parallel

namespace baleine::parallel {
namespace {

TEST(GpuMapping, RanksMapToTheNodesGpusByLocalRank) {
  EXPECT_EQ(gpu_for_local_rank(0, 8), 0);
  EXPECT_EQ(gpu_for_local_rank(7, 8), 7);
  EXPECT_EQ(gpu_for_local_rank(9, 8), 1);
  EXPECT_EQ(gpu_for_local_rank(3, 0), -1);
}

}  // namespace
}  // namespace baleine::parallel
