#pragma once
// Helpers shared by the token-permutation tests (moe_dispatch_test.cpp on the CPU,
// moe_dispatch_cuda_test.cpp against it): the expert index as vectors, and random routings.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/moe_dispatch.h"

namespace baleine::kernels::moe_dispatch_testing {

struct ExpertIndex {
  std::vector<int32_t> offsets, row_token, assignment_row;
};

// kernels::build_expert_index into vectors pre-filled with -1, so an entry it fails to write
// shows.
inline ExpertIndex build_index(const std::vector<int32_t>& chosen, int64_t tokens, int64_t top_k,
                               int64_t experts) {
  ExpertIndex index{std::vector<int32_t>(experts + 1, -1),
                    std::vector<int32_t>(tokens * top_k, -1),
                    std::vector<int32_t>(tokens * top_k, -1)};
  build_expert_index(chosen.data(), tokens, top_k, experts, index.offsets.data(),
                     index.row_token.data(), index.assignment_row.data());
  return index;
}

// Each token picks top_k DISTINCT experts, drawn from `allowed` (so some experts can be left
// with no tokens at all).
inline std::vector<int32_t> random_distinct_choice(int64_t tokens, int64_t top_k,
                                                   std::vector<int32_t> allowed, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> chosen;
  for (int64_t t = 0; t < tokens; ++t) {
    std::shuffle(allowed.begin(), allowed.end(), rng);
    chosen.insert(chosen.end(), allowed.begin(), allowed.begin() + top_k);
  }
  return chosen;
}

inline std::vector<int32_t> all_experts(int32_t experts) {
  std::vector<int32_t> ids(experts);
  std::iota(ids.begin(), ids.end(), 0);
  return ids;
}

}  // namespace baleine::kernels::moe_dispatch_testing
