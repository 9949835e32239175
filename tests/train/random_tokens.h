#pragma once
// A training shard of random byte-level tokens (vocabulary 257) for the trainer tests: what
// matters is that every run of a test reads the same ones.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "trainer/data/shard.h"

namespace baleine::testing {

inline void write_random_token_shard(const std::string& path, size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint16_t> tokens(count);
  for (auto& t : tokens) t = static_cast<uint16_t>(rng() % 257);
  data::write_shard(path, tokens, {257, 256, 1});
}

}  // namespace baleine::testing
