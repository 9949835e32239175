// `data prepare`: documents become bytes + end-of-text, the tail of the stream becomes the
// validation split, shards respect shard_tokens, directory walks skip hidden and binary files,
// old shards are removed, and bad inputs are UserErrors.
#include "trainer/data/prepare.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "trainer/data/dataset.h"
#include "trainer/data/shard.h"
#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"
#include "trainer/errors.h"

namespace baleine::data {
namespace {

namespace fs = std::filesystem;

constexpr uint16_t kEot = 256;

using baleine::testing::scratch_dir;

void write_file(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

std::vector<uint16_t> shard_tokens(const std::string& path) {
  TokenShard shard(path);
  return std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size());
}

// The tokens of several shards, concatenated.
std::vector<uint16_t> all_tokens(const std::vector<std::string>& paths) {
  std::vector<uint16_t> tokens;
  for (const std::string& path : paths) {
    const std::vector<uint16_t> part = shard_tokens(path);
    tokens.insert(tokens.end(), part.begin(), part.end());
  }
  return tokens;
}

std::vector<uint16_t> bytes_then_eot(const std::string& text) {
  std::vector<uint16_t> tokens(text.begin(), text.end());
  for (uint16_t& token : tokens) token &= 0xFF;  // char may be signed
  tokens.push_back(kEot);
  return tokens;
}

using baleine::testing::expect_user_error;

PrepareOptions options_for(const std::vector<std::string>& inputs, const std::string& output,
                           double val_fraction) {
  PrepareOptions options;
  options.inputs = inputs;
  options.output_dir = output;
  options.val_fraction = val_fraction;
  return options;
}

TEST(Prepare, DocumentsAreBytesSeparatedByEndOfText) {
  const std::string dir = scratch_dir();
  write_file(dir + "/in/one.txt", "ab");
  write_file(dir + "/in/two.txt", "c\xC3\xA9\n");  // UTF-8 bytes stay bytes
  std::ostringstream log;
  const PrepareSummary summary = prepare_byte_corpus(
      options_for({dir + "/in/one.txt", dir + "/in/two.txt"}, dir + "/out", 0.0), log);
  EXPECT_EQ(summary.documents, 2);
  EXPECT_EQ(summary.train_tokens, 8);
  EXPECT_EQ(summary.val_tokens, 0);
  ASSERT_EQ(summary.train_shards.size(), 1u);
  EXPECT_TRUE(summary.val_shards.empty());
  EXPECT_EQ(summary.train_shards[0], dir + "/out/train_000000.bin");
  const std::vector<uint16_t> expected = {'a', 'b', kEot, 'c', 0xC3, 0xA9, '\n', kEot};
  EXPECT_EQ(shard_tokens(summary.train_shards[0]), expected);
  TokenShard shard(summary.train_shards[0]);
  EXPECT_EQ(shard.metadata().vocab_size, 257);
  EXPECT_EQ(shard.metadata().end_of_text, 256);
  EXPECT_EQ(shard.metadata().documents, 2);
  EXPECT_NE(log.str().find("2 documents"), std::string::npos) << log.str();
  EXPECT_FALSE(fs::exists(dir + "/out/val_000000.bin"));
}

TEST(Prepare, TheLastFractionOfTokensIsTheValidationSplit) {
  const std::string dir = scratch_dir();
  std::string text;
  for (int i = 0; i < 999; ++i) text += static_cast<char>('a' + i % 26);
  write_file(dir + "/corpus.txt", text);
  std::ostringstream log;
  const PrepareSummary summary =
      prepare_byte_corpus(options_for({dir + "/corpus.txt"}, dir + "/out", 0.1), log);
  // 999 bytes + 1 end-of-text = 1000 tokens: 100 for validation, 900 for training.
  EXPECT_EQ(summary.val_tokens, 100);
  EXPECT_EQ(summary.train_tokens, 900);
  const std::vector<uint16_t> stream = bytes_then_eot(text);
  EXPECT_EQ(all_tokens(summary.train_shards),
            std::vector<uint16_t>(stream.begin(), stream.begin() + 900));
  EXPECT_EQ(all_tokens(summary.val_shards),
            std::vector<uint16_t>(stream.begin() + 900, stream.end()));
  EXPECT_EQ(summary.val_shards[0], dir + "/out/val_000000.bin");
}

TEST(Prepare, ShardTokensCutsEachSplitIntoSeveralFiles) {
  const std::string dir = scratch_dir();
  const std::string text(49, 'x');  // 50 tokens: 40 train, 10 val with val_fraction 0.2
  write_file(dir + "/corpus.txt", text);
  PrepareOptions options = options_for({dir + "/corpus.txt"}, dir + "/out", 0.2);
  options.shard_tokens = 16;
  std::ostringstream log;
  const PrepareSummary summary = prepare_byte_corpus(options, log);
  ASSERT_EQ(summary.train_shards.size(), 3u);
  EXPECT_EQ(summary.train_shards[2], dir + "/out/train_000002.bin");
  EXPECT_EQ(TokenShard(summary.train_shards[0]).size(), 16);
  EXPECT_EQ(TokenShard(summary.train_shards[1]).size(), 16);
  EXPECT_EQ(TokenShard(summary.train_shards[2]).size(), 8);
  ASSERT_EQ(summary.val_shards.size(), 1u);
  EXPECT_EQ(TokenShard(summary.val_shards[0]).size(), 10);
  // The one document ends in the last val shard; earlier shards hold none of its end.
  EXPECT_EQ(TokenShard(summary.train_shards[0]).metadata().documents, 0);
  EXPECT_EQ(TokenShard(summary.val_shards[0]).metadata().documents, 1);
  EXPECT_EQ(all_tokens(summary.train_shards).size() + all_tokens(summary.val_shards).size(), 50u);
}

TEST(Prepare, DirectoryWalkIsSortedAndSkipsHiddenAndBinaryFiles) {
  const std::string dir = scratch_dir();
  write_file(dir + "/in/b.txt", "B");
  write_file(dir + "/in/a.txt", "A");
  write_file(dir + "/in/sub/c.txt", "C");
  write_file(dir + "/in/.hidden.txt", "H");
  write_file(dir + "/in/.git/config", "G");
  write_file(dir + "/in/image.png", std::string("\x89PNG\0\0", 6));
  // A binary file named explicitly is taken as it is.
  write_file(dir + "/blob.dat", std::string("x\0y", 3));
  std::ostringstream log;
  const PrepareSummary summary = prepare_byte_corpus(
      options_for({dir + "/in", dir + "/blob.dat"}, dir + "/out", 0.0), log);
  EXPECT_EQ(summary.documents, 4);
  const std::vector<uint16_t> expected = {'A', kEot, 'B', kEot, 'C', kEot, 'x', 0, 'y', kEot};
  EXPECT_EQ(all_tokens(summary.train_shards), expected);
  EXPECT_NE(log.str().find("image.png"), std::string::npos) << log.str();
}

TEST(Prepare, OldShardsAreRemovedFirst) {
  const std::string dir = scratch_dir();
  write_file(dir + "/corpus.txt", "hello");
  write_file(dir + "/out/train_000007.bin", "stale");
  write_file(dir + "/out/val_000003.bin", "stale");
  write_file(dir + "/out/train_000001.bin.tmp", "interrupted");
  write_file(dir + "/out/notes.txt", "keep me");
  std::ostringstream log;
  prepare_byte_corpus(options_for({dir + "/corpus.txt"}, dir + "/out", 0.0), log);
  EXPECT_FALSE(fs::exists(dir + "/out/train_000007.bin"));
  EXPECT_FALSE(fs::exists(dir + "/out/val_000003.bin"));
  EXPECT_FALSE(fs::exists(dir + "/out/train_000001.bin.tmp"));
  EXPECT_TRUE(fs::exists(dir + "/out/notes.txt"));
  EXPECT_TRUE(fs::exists(dir + "/out/train_000000.bin"));
  // The directory now reads as exactly the new corpus.
  TokenDataset dataset = TokenDataset::open(dir + "/out", "data.train", "", 257, 2);
  EXPECT_EQ(dataset.size(), 6);
}

TEST(Prepare, MissingInputIsNamedAndNothingIsTouched) {
  const std::string dir = scratch_dir();
  write_file(dir + "/corpus.txt", "hello");
  write_file(dir + "/out/train_000000.bin", "previous run");
  const std::string missing = dir + "/no_such_file.txt";
  std::ostringstream log;
  expect_user_error(
      [&] { prepare_byte_corpus(options_for({dir + "/corpus.txt", missing}, dir + "/out", 0.0), log); },
      {missing, "not found"});
  EXPECT_TRUE(fs::exists(dir + "/out/train_000000.bin"));
}

TEST(Prepare, OutputDirectoryIsCreatedWithParents) {
  const std::string dir = scratch_dir();
  write_file(dir + "/corpus.txt", "hello");
  std::ostringstream log;
  const PrepareSummary summary =
      prepare_byte_corpus(options_for({dir + "/corpus.txt"}, dir + "/a/b/c", 0.0), log);
  EXPECT_TRUE(fs::exists(dir + "/a/b/c/train_000000.bin"));
  EXPECT_EQ(summary.train_tokens, 6);
}

TEST(Prepare, OutputPathThatIsAFileIsAUserError) {
  const std::string dir = scratch_dir();
  write_file(dir + "/corpus.txt", "hello");
  write_file(dir + "/taken", "a file");
  std::ostringstream log;
  expect_user_error(
      [&] { prepare_byte_corpus(options_for({dir + "/corpus.txt"}, dir + "/taken", 0.0), log); },
      {dir + "/taken", "cannot create output directory"});
}

TEST(Prepare, ValidationSplitTooSmallIsRefused) {
  const std::string dir = scratch_dir();
  write_file(dir + "/corpus.txt", "tiny");  // 5 tokens: 10% is 0.5 -> 1 token
  std::ostringstream log;
  expect_user_error(
      [&] { prepare_byte_corpus(options_for({dir + "/corpus.txt"}, dir + "/out", 0.1), log); },
      {"val_fraction", "5 tokens", "at least 2"});
  EXPECT_NO_THROW(prepare_byte_corpus(options_for({dir + "/corpus.txt"}, dir + "/out", 0.0), log));
}

TEST(Prepare, InvalidOptionsAreUserErrors) {
  const std::string dir = scratch_dir();
  write_file(dir + "/corpus.txt", "hello world");
  std::ostringstream log;
  PrepareOptions options = options_for({dir + "/corpus.txt"}, dir + "/out", 1.0);
  expect_user_error([&] { prepare_byte_corpus(options, log); }, {"val_fraction", "[0, 1)"});
  options.val_fraction = -0.1;
  expect_user_error([&] { prepare_byte_corpus(options, log); }, {"val_fraction"});
  options.val_fraction = 0.0;
  options.shard_tokens = 0;
  expect_user_error([&] { prepare_byte_corpus(options, log); }, {"shard_tokens"});
  expect_user_error([&] { prepare_byte_corpus(options_for({}, dir + "/out", 0.0), log); },
                    {"inputs"});
  expect_user_error([&] { prepare_byte_corpus(options_for({dir + "/corpus.txt"}, "", 0.0), log); },
                    {"output_dir"});
  write_file(dir + "/only_binary/x.bin", std::string("\0", 1));
  expect_user_error(
      [&] { prepare_byte_corpus(options_for({dir + "/only_binary"}, dir + "/out", 0.0), log); },
      {"no text files"});
}

TEST(Prepare, TinyShakespeareOpensAsDatasets) {
  const std::string corpus = "/work/shared/data/tinyshakespeare.txt";
  if (!fs::exists(corpus)) GTEST_SKIP() << corpus << " not present";
  const std::string dir = scratch_dir();
  std::ostringstream log;
  PrepareOptions options = options_for({corpus}, dir + "/out", 0.1);
  options.shard_tokens = 400'000;
  const PrepareSummary summary = prepare_byte_corpus(options, log);
  const int64_t total = static_cast<int64_t>(fs::file_size(corpus)) + 1;
  EXPECT_EQ(summary.train_tokens + summary.val_tokens, total);
  EXPECT_EQ(summary.train_shards.size(), static_cast<size_t>((summary.train_tokens + 399'999) / 400'000));
  TokenDataset train = TokenDataset::open(dir + "/out/train_*.bin", "data.train", "", 257, 1025);
  TokenDataset val = TokenDataset::open(dir + "/out/val_*.bin", "data.val", "", 257, 1025);
  EXPECT_EQ(train.size(), summary.train_tokens);
  EXPECT_EQ(val.size(), summary.val_tokens);
  std::vector<int32_t> last(1);
  val.read(val.size() - 1, 1, last.data());
  EXPECT_EQ(last[0], kEot);
}

}  // namespace
}  // namespace baleine::data
