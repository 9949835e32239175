// Layers to pipeline stages: every block exactly once, in order, balanced within one block (or
// as parallel.stage_layers lists), embedding first and head last.
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

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

TEST(StageAssignment, ExplicitCountsAreFollowedAndCoverEveryBlockOnce) {
  // DeepSeek-V3's 61 blocks over 4 stages, the last one lighter for the head (uneven).
  const std::vector<int64_t> counts = {16, 16, 16, 13};
  const auto a = assign_layers(61, 4, counts);
  ASSERT_EQ(a.size(), 4u);
  int64_t next = 0;
  for (const auto& st : a) {
    EXPECT_EQ(st.first_layer, next);
    EXPECT_EQ(st.layers, counts[static_cast<size_t>(st.stage)]);
    EXPECT_EQ(st.has_embedding, st.stage == 0);
    EXPECT_EQ(st.has_head, st.stage == 3);
    next += st.layers;
  }
  EXPECT_EQ(next, 61);
  EXPECT_NO_THROW(describe_assignment(a, 61));
  EXPECT_EQ(describe_assignment(assign_layers(4, 3, {1, 2, 1}), 4),
            "  stage 0: embedding + blocks 0-0\n  stage 1: blocks 1-2\n"
            "  stage 2: blocks 3-3 + final norm, head, loss\n");
  // Later stages heavier than the even split would make them.
  EXPECT_EQ(assign_layers(5, 2, {1, 4})[1].first_layer, 1);
}

TEST(StageAssignment, EmptyCountsMeanTheEvenSplit) {
  for (int64_t layers = 1; layers <= 20; ++layers) {
    for (int stages = 1; stages <= layers; ++stages) {
      const auto even = assign_layers(layers, stages);
      const auto listed = assign_layers(layers, stages, {});
      ASSERT_EQ(listed.size(), even.size());
      for (size_t s = 0; s < even.size(); ++s) {
        EXPECT_EQ(listed[s].first_layer, even[s].first_layer);
        EXPECT_EQ(listed[s].layers, even[s].layers);
      }
    }
  }
}

TEST(StageAssignment, RejectsCountsThatDoNotSplitTheBlocks) {
  EXPECT_THROW(assign_layers(4, 3, {2, 2}), std::invalid_argument);        // too few entries
  EXPECT_THROW(assign_layers(4, 2, {2, 1, 1}), std::invalid_argument);     // too many
  EXPECT_THROW(assign_layers(4, 2, {4, 0}), std::invalid_argument);        // an empty stage
  EXPECT_THROW(assign_layers(4, 2, {5, -1}), std::invalid_argument);       // a negative one
  EXPECT_THROW(assign_layers(4, 2, {2, 1}), std::invalid_argument);        // sums to 3
  EXPECT_THROW(assign_layers(4, 2, {3, 3}), std::invalid_argument);        // sums to 6
  EXPECT_THROW(assign_layers(4, 2, {INT64_MAX, INT64_MAX}), std::invalid_argument);
  try {
    assign_layers(4, 2, {2, 1});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 1] sums to 3, not 4 blocks"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace baleine::parallel
