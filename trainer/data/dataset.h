#pragma once
// A token stream made of one or more shards, and the deterministic sampler that cuts training
// and validation sequences out of it.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/data/shard.h"

namespace baleine::data {

class TokenDataset {
 public:
  // `source` is a shard file, a directory (all *.bin inside, sorted) or a glob pattern.
  // `key` and `where` name the config entry for errors (e.g. "data.train", "run.yaml:14").
  // Every token must be < vocab_size (checked once at open). Throws UserError when nothing
  // matches, a shard is bad, or the stream is shorter than min_tokens.
  static TokenDataset open(const std::string& source, const std::string& key,
                           const std::string& where, int64_t vocab_size, int64_t min_tokens);

  int64_t size() const { return total_; }
  const std::vector<TokenShard>& shards() const { return shards_; }
  // Copies tokens [offset, offset + count) of the concatenated stream, across shard ends.
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  std::vector<TokenShard> shards_;
  std::vector<int64_t> starts_;  // stream offset of each shard
  int64_t total_ = 0;
};

// Draws sequence windows from a dataset, which must outlive the sampler (it keeps a pointer).
// Row `r` of the global batch at step `s` starts at a
// position that is a pure function of (seed, stream, s, r): the same on any number of ranks,
// and nothing to save for resume. inputs = tokens[p, p+seq_len), targets = tokens[p+1, p+seq_len+1).
class BatchSampler {
 public:
  BatchSampler(const TokenDataset& dataset, int64_t seq_len, uint64_t seed, uint64_t stream);
  // Fills rows [first_row, first_row + rows) of the global batch of `step`; inputs and targets
  // are [rows, seq_len].
  void fill(int64_t step, int64_t first_row, int64_t rows, int32_t* inputs,
            int32_t* targets) const;

 private:
  const TokenDataset* dataset_;
  int64_t seq_len_;
  uint64_t seed_;
  uint64_t stream_;
};

}  // namespace baleine::data
