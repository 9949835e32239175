// TokenDataset (sources, validation, reads across shards) and BatchSampler (a pure function of
// seed, stream, step and row; uniform starts; targets = inputs shifted by one).
#include "trainer/data/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"
#include "trainer/errors.h"

namespace baleine::data {
namespace {

namespace fs = std::filesystem;

using baleine::testing::scratch_dir;

// Tokens first, first+1, ...: a token's value is its position in the stream, so a window's first
// input tells where the sampler put it.
std::vector<uint16_t> counting(int first, int count) {
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  std::iota(tokens.begin(), tokens.end(), static_cast<uint16_t>(first));
  return tokens;
}

// Shards of the given sizes, named <prefix>_000000.bin..., together counting 0, 1, 2, ...
int write_counting_shards(const std::string& dir, const std::string& prefix,
                          const std::vector<int>& sizes) {
  int next = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "/%s_%06zu.bin", prefix.c_str(), i);
    write_shard(dir + name, counting(next, sizes[i]), ShardMetadata{});
    next += sizes[i];
  }
  return next;
}

using baleine::testing::expect_user_error;

std::vector<int32_t> read_all(const TokenDataset& dataset) {
  std::vector<int32_t> out(static_cast<size_t>(dataset.size()));
  dataset.read(0, dataset.size(), out.data());
  return out;
}

std::vector<int32_t> expected_counting(int count) {
  std::vector<int32_t> out(static_cast<size_t>(count));
  std::iota(out.begin(), out.end(), 0);
  return out;
}

constexpr int64_t kWideVocab = 65536;

TEST(Dataset, SingleFileSource) {
  const std::string dir = scratch_dir();
  write_counting_shards(dir, "train", {10});
  TokenDataset dataset = TokenDataset::open(dir + "/train_000000.bin", "data.train", "", kWideVocab, 2);
  EXPECT_EQ(dataset.size(), 10);
  EXPECT_EQ(dataset.shards().size(), 1u);
  EXPECT_EQ(read_all(dataset), expected_counting(10));
}

TEST(Dataset, DirectorySourceTakesSortedBinFilesOnly) {
  const std::string dir = scratch_dir();
  const int total = write_counting_shards(dir, "part", {4, 6, 5});
  std::ofstream(dir + "/README.txt") << "not a shard";
  std::ofstream(dir + "/.hidden.bin") << "not a shard either";
  TokenDataset dataset = TokenDataset::open(dir, "data.train", "", kWideVocab, 2);
  ASSERT_EQ(dataset.shards().size(), 3u);
  EXPECT_EQ(dataset.shards()[0].path(), dir + "/part_000000.bin");
  EXPECT_EQ(dataset.shards()[2].path(), dir + "/part_000002.bin");
  EXPECT_EQ(read_all(dataset), expected_counting(total));
}

TEST(Dataset, GlobSourceSelectsMatchingShards) {
  const std::string dir = scratch_dir();
  const int train_total = write_counting_shards(dir, "train", {3, 4});
  write_counting_shards(dir, "val", {5});
  TokenDataset dataset = TokenDataset::open(dir + "/train_*.bin", "data.train", "", kWideVocab, 2);
  EXPECT_EQ(dataset.shards().size(), 2u);
  EXPECT_EQ(read_all(dataset), expected_counting(train_total));
}

TEST(Dataset, NothingMatchingIsAUserErrorWithAHint) {
  const std::string dir = scratch_dir();
  const std::string source = dir + "/train_*.bin";
  expect_user_error([&] { TokenDataset::open(source, "data.train", "run.yaml:7", kWideVocab, 2); },
                    {"run.yaml:7", "data.train", "no token shards match '" + source + "'",
                     "baleine data prepare", "point data.train at DIR"});
  // An empty directory matches nothing as well.
  expect_user_error([&] { TokenDataset::open(dir, "data.val", "", kWideVocab, 2); },
                    {"no token shards match"});
}

TEST(Dataset, TokenAtOrAboveVocabIsRefused) {
  const std::string dir = scratch_dir();
  write_shard(dir + "/a.bin", {1, 2, 3}, ShardMetadata{});
  write_shard(dir + "/b.bin", {5, 6, 300, 7, 400}, ShardMetadata{});
  expect_user_error([&] { TokenDataset::open(dir, "data.train", "", 257, 2); },
                    {dir + "/b.bin", "token 300", "index 2", "257", "at least 401"});
  // Exactly the vocabulary size is already out of range; one below is fine.
  write_shard(dir + "/b.bin", {256, 257}, ShardMetadata{});
  expect_user_error([&] { TokenDataset::open(dir, "data.train", "", 257, 2); },
                    {"token 257", "index 1"});
  EXPECT_NO_THROW(TokenDataset::open(dir, "data.train", "", 258, 2));
}

TEST(Dataset, TooFewTokensNamesBothCounts) {
  const std::string dir = scratch_dir();
  write_counting_shards(dir, "val", {40, 60});
  expect_user_error([&] { TokenDataset::open(dir, "data.val", "run.yaml:9", kWideVocab, 1025); },
                    {"run.yaml:9", "data.val", "100 tokens", "1025"});
  EXPECT_NO_THROW(TokenDataset::open(dir, "data.val", "", kWideVocab, 100));
}

TEST(Dataset, BadShardInADirectoryIsNamed) {
  const std::string dir = scratch_dir();
  write_counting_shards(dir, "train", {8, 8});
  fs::resize_file(dir + "/train_000001.bin", 1024 + 8 * 2 - 1);
  expect_user_error([&] { TokenDataset::open(dir, "data.train", "", kWideVocab, 2); },
                    {dir + "/train_000001.bin", "truncated"});
}

TEST(Dataset, ReadSpansShardBoundariesAndEmptyShards) {
  const std::string dir = scratch_dir();
  // Sizes 5, 0, 3, 4: an empty shard sits between two boundaries.
  const int total = write_counting_shards(dir, "train", {5, 0, 3, 4});
  TokenDataset dataset = TokenDataset::open(dir, "data.train", "", kWideVocab, 2);
  ASSERT_EQ(dataset.size(), total);
  for (int64_t offset = 0; offset <= total; ++offset) {
    for (int64_t count = 0; offset + count <= total; ++count) {
      std::vector<int32_t> out(static_cast<size_t>(count), -1);
      dataset.read(offset, count, out.data());
      for (int64_t i = 0; i < count; ++i) ASSERT_EQ(out[i], offset + i) << offset << "+" << i;
    }
  }
  std::vector<int32_t> out(4);
  EXPECT_THROW(dataset.read(total - 3, 4, out.data()), std::out_of_range);
  EXPECT_THROW(dataset.read(-1, 1, out.data()), std::out_of_range);
}

// Starts of rows [0, rows) of `step`, read back from the counting tokens.
std::vector<int32_t> starts(const BatchSampler& sampler, int64_t seq_len, int64_t step,
                            int64_t rows) {
  std::vector<int32_t> inputs(static_cast<size_t>(rows * seq_len));
  std::vector<int32_t> targets(inputs.size());
  sampler.fill(step, 0, rows, inputs.data(), targets.data());
  std::vector<int32_t> result;
  for (int64_t r = 0; r < rows; ++r) result.push_back(inputs[static_cast<size_t>(r * seq_len)]);
  return result;
}

class Sampler : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = scratch_dir();
    write_counting_shards(dir, "train", {20000, 15000, 25000});
    dataset_ = TokenDataset::open(dir, "data.train", "", kWideVocab, kSeqLen + 1);
  }
  static constexpr int64_t kSeqLen = 64;
  TokenDataset dataset_;
};

TEST_F(Sampler, SameArgumentsGiveTheSameWindows) {
  BatchSampler a(dataset_, kSeqLen, 1234, 0);
  BatchSampler b(dataset_, kSeqLen, 1234, 0);
  EXPECT_EQ(starts(a, kSeqLen, 17, 32), starts(b, kSeqLen, 17, 32));
}

TEST_F(Sampler, StepRowStreamAndSeedAllChangeTheWindows) {
  BatchSampler base(dataset_, kSeqLen, 1234, 0);
  const std::vector<int32_t> reference = starts(base, kSeqLen, 5, 16);
  EXPECT_NE(starts(base, kSeqLen, 6, 16), reference);
  EXPECT_NE(starts(BatchSampler(dataset_, kSeqLen, 1234, 1), kSeqLen, 5, 16), reference);
  EXPECT_NE(starts(BatchSampler(dataset_, kSeqLen, 1235, 0), kSeqLen, 5, 16), reference);
  // Rows of one step differ from one another (16 draws from 59937 starts: a repeat would
  // happen by chance with probability ~0.2%, and the sampler is deterministic, so never flaky).
  EXPECT_EQ(std::set<int32_t>(reference.begin(), reference.end()).size(), reference.size());
}

TEST_F(Sampler, RowsDoNotDependOnHowTheBatchIsSplitAcrossRanks) {
  BatchSampler sampler(dataset_, kSeqLen, 99, 0);
  const int64_t rows = 8;
  std::vector<int32_t> whole_in(rows * kSeqLen), whole_tgt(rows * kSeqLen);
  sampler.fill(3, 0, rows, whole_in.data(), whole_tgt.data());
  std::vector<int32_t> part_in(rows * kSeqLen), part_tgt(rows * kSeqLen);
  sampler.fill(3, 0, 3, part_in.data(), part_tgt.data());
  sampler.fill(3, 3, 5, part_in.data() + 3 * kSeqLen, part_tgt.data() + 3 * kSeqLen);
  EXPECT_EQ(part_in, whole_in);
  EXPECT_EQ(part_tgt, whole_tgt);
}

TEST_F(Sampler, WindowsAreContiguousAndTargetsAreShiftedInputs) {
  BatchSampler sampler(dataset_, kSeqLen, 7, 0);
  const int64_t rows = 200;
  std::vector<int32_t> inputs(rows * kSeqLen), targets(rows * kSeqLen);
  sampler.fill(11, 0, rows, inputs.data(), targets.data());
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t start = inputs[r * kSeqLen];
    ASSERT_GE(start, 0);
    ASSERT_LE(start, dataset_.size() - kSeqLen - 1);
    for (int64_t t = 0; t < kSeqLen; ++t) {
      ASSERT_EQ(inputs[r * kSeqLen + t], start + t);
      ASSERT_EQ(targets[r * kSeqLen + t], start + t + 1);
    }
  }
}

TEST(SamplerRange, EveryStartIsReachedAndDrawsAreUniform) {
  // 13 tokens and seq_len 3: starts 0..9 (the last window's target ends at token 12).
  const std::string dir = scratch_dir();
  write_counting_shards(dir, "train", {6, 7});
  TokenDataset dataset = TokenDataset::open(dir, "data.train", "", kWideVocab, 4);
  const int64_t seq_len = 3, rows = 100000, positions = 10;
  BatchSampler sampler(dataset, seq_len, 2024, 3);
  std::vector<int32_t> inputs(rows * seq_len), targets(rows * seq_len);
  sampler.fill(0, 0, rows, inputs.data(), targets.data());
  std::vector<int64_t> histogram(positions, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t start = inputs[r * seq_len];
    ASSERT_GE(start, 0);
    ASSERT_LT(start, positions);
    ++histogram[start];
  }
  // Each count is Binomial(1e5, 0.1): mean 10000, sd ~95. +-600 is over 6 sd; the draws are
  // deterministic, so this either always passes or flags a biased mapping.
  for (int64_t p = 0; p < positions; ++p) {
    EXPECT_NEAR(static_cast<double>(histogram[p]), 10000.0, 600.0) << "start " << p;
  }
}

TEST(SamplerRange, StreamTooShortForOneWindowIsRefused) {
  const std::string dir = scratch_dir();
  write_counting_shards(dir, "train", {8});
  TokenDataset dataset = TokenDataset::open(dir, "data.train", "", kWideVocab, 2);
  EXPECT_THROW(BatchSampler(dataset, 8, 1, 0), std::invalid_argument);
  EXPECT_NO_THROW(BatchSampler(dataset, 7, 1, 0));
}

}  // namespace
}  // namespace baleine::data
