// Layers to pipeline stages: every block exactly once, in order, balanced within one block,
// embedding first and head last.
#include <gtest/gtest.h>

#include <stdexcept>

#include "parallel/stage_assignment.h"

namespace baleine::parallel {
namespace {

TEST(StageAssignment, CoversEveryBlockOnceInOrderAndBalanced) {
  for (int64_t layers = 1; layers <= 61; ++layers) {  // 61: DeepSeek-V3's depth
    for (int stages = 1; stages <= std::min<int64_t>(layers, 32); ++stages) {
      const auto a = assign_layers(layers, stages);
      ASSERT_EQ(a.size(), static_cast<size_t>(stages));
      int64_t next = 0, most = 0, least = layers;
      for (const auto& st : a) {
        EXPECT_EQ(st.first_layer, next);
        EXPECT_GE(st.layers, 1);
        next += st.layers;
        most = std::max(most, st.layers);
        least = std::min(least, st.layers);
        EXPECT_EQ(st.has_embedding, st.stage == 0);
        EXPECT_EQ(st.has_head, st.stage == stages - 1);
      }
      EXPECT_EQ(next, layers);
      EXPECT_LE(most - least, 1);
      EXPECT_NO_THROW(describe_assignment(a, layers));
    }
  }
}

TEST(StageAssignment, DescribesAndRejects) {
  const auto a = assign_layers(5, 2);
  EXPECT_EQ(describe_assignment(a, 5),
            "  stage 0: embedding + blocks 0-2\n  stage 1: blocks 3-4 + final norm, head, loss\n");
  EXPECT_THROW(assign_layers(2, 3), std::invalid_argument);
  auto broken = a;
  broken[1].first_layer = 2;  // block 2 twice, block 4 never
  EXPECT_THROW(describe_assignment(broken, 5), std::logic_error);
}

}  // namespace
}  // namespace baleine::parallel
