// Token shards: the baleine format round-trips, llm.c's format is read, and every malformed file
// is refused with a UserError that names the file.
#include "trainer/data/shard.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"
#include "trainer/errors.h"

namespace baleine::data {
namespace {

namespace fs = std::filesystem;

using baleine::testing::scratch_dir;

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A shard written by hand, as llm.c's dev/data/data_common.py does: 256 int32 header, uint16s.
void write_raw_shard(const std::string& path, int32_t magic, int32_t version,
                     int32_t declared_count, const std::vector<uint16_t>& tokens) {
  std::vector<int32_t> header(kShardHeaderInts, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = declared_count;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()),
            static_cast<std::streamsize>(header.size() * sizeof(int32_t)));
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * sizeof(uint16_t)));
}

using baleine::testing::expect_user_error;

TEST(Shard, BaleineFormatRoundTrips) {
  const std::string path = scratch_dir() + "/round.bin";
  const std::vector<uint16_t> tokens = {0, 1, 255, 256, 65535, 42, 7};
  ShardMetadata metadata;
  metadata.vocab_size = 65536;
  metadata.end_of_text = 256;
  metadata.documents = 3;
  write_shard(path, tokens, metadata);
  EXPECT_FALSE(fs::exists(path + ".tmp")) << "the temporary file must be renamed into place";
  EXPECT_EQ(fs::file_size(path), 1024u + 2u * tokens.size());

  TokenShard shard(path);
  EXPECT_FALSE(shard.is_llmc());
  EXPECT_EQ(shard.path(), path);
  ASSERT_EQ(shard.size(), static_cast<int64_t>(tokens.size()));
  EXPECT_EQ(std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size()), tokens);
  EXPECT_EQ(shard.metadata().vocab_size, 65536);
  EXPECT_EQ(shard.metadata().end_of_text, 256);
  EXPECT_EQ(shard.metadata().documents, 3);
}

TEST(Shard, EmptyShardRoundTrips) {
  const std::string path = scratch_dir() + "/empty_tokens.bin";
  write_shard(path, {}, ShardMetadata{});
  TokenShard shard(path);
  EXPECT_EQ(shard.size(), 0);
}

TEST(Shard, RewriteReplacesTheOldShard) {
  const std::string path = scratch_dir() + "/again.bin";
  write_shard(path, {1, 2, 3, 4, 5}, ShardMetadata{});
  write_shard(path, {9, 8}, ShardMetadata{});
  TokenShard shard(path);
  ASSERT_EQ(shard.size(), 2);
  EXPECT_EQ(shard.tokens()[0], 9);
  EXPECT_EQ(shard.tokens()[1], 8);
}

TEST(Shard, LlmcFormatIsRead) {
  const std::string path = scratch_dir() + "/tinyshakespeare_val.bin";
  const std::vector<uint16_t> tokens = {50256, 5962, 22307, 25, 198};
  write_raw_shard(path, kLlmcShardMagic, 1, static_cast<int32_t>(tokens.size()), tokens);
  TokenShard shard(path);
  EXPECT_TRUE(shard.is_llmc());
  ASSERT_EQ(shard.size(), 5);
  EXPECT_EQ(std::vector<uint16_t>(shard.tokens(), shard.tokens() + 5), tokens);
  // llm.c's header says nothing about the vocabulary.
  EXPECT_EQ(shard.metadata().vocab_size, 0);
  EXPECT_EQ(shard.metadata().end_of_text, -1);
}

TEST(Shard, MoveKeepsTheMapping) {
  const std::string path = scratch_dir() + "/move.bin";
  write_shard(path, {3, 1, 4, 1, 5}, ShardMetadata{});
  TokenShard first(path);
  TokenShard second(std::move(first));
  EXPECT_EQ(first.size(), 0);
  EXPECT_EQ(first.tokens(), nullptr);
  ASSERT_EQ(second.size(), 5);
  EXPECT_EQ(second.tokens()[2], 4);
  TokenShard third(path);
  third = std::move(second);
  EXPECT_EQ(third.tokens()[4], 5);
}

TEST(Shard, TruncatedShardNamesExpectedAndActualSize) {
  const std::string path = scratch_dir() + "/truncated.bin";
  write_shard(path, std::vector<uint16_t>(100, 7), ShardMetadata{});
  fs::resize_file(path, 1024 + 200 - 2);
  expect_user_error([&] { TokenShard shard(path); },
                    {path, "100 tokens", "1224", "1222", "truncated"});
}

TEST(Shard, PaddedShardIsRefused) {
  const std::string path = scratch_dir() + "/padded.bin";
  write_raw_shard(path, kLlmcShardMagic, 1, 10, std::vector<uint16_t>(12, 1));
  expect_user_error([&] { TokenShard shard(path); }, {path, "1044", "1048"});
}

TEST(Shard, NegativeCountIsRefused) {
  const std::string path = scratch_dir() + "/negative.bin";
  write_raw_shard(path, kLlmcShardMagic, 1, -1, {});
  expect_user_error([&] { TokenShard shard(path); }, {path, "-1 tokens"});
}

TEST(Shard, BadMagicIsRefused) {
  const std::string path = scratch_dir() + "/magic.bin";
  write_raw_shard(path, 12345, 1, 2, {1, 2});
  expect_user_error([&] { TokenShard shard(path); }, {path, "magic", "12345", "20240520"});
}

TEST(Shard, BadVersionIsRefused) {
  const std::string path = scratch_dir() + "/version.bin";
  write_raw_shard(path, kLlmcShardMagic, 2, 2, {1, 2});
  expect_user_error([&] { TokenShard shard(path); }, {path, "version 2"});
}

TEST(Shard, MissingFileIsRefused) {
  const std::string path = scratch_dir() + "/does_not_exist.bin";
  expect_user_error([&] { TokenShard shard(path); }, {path, "not found"});
}

TEST(Shard, EmptyFileIsRefused) {
  const std::string path = scratch_dir() + "/zero_bytes.bin";
  write_bytes(path, {});
  expect_user_error([&] { TokenShard shard(path); }, {path, "empty"});
}

TEST(Shard, FileShorterThanHeaderIsRefused) {
  const std::string path = scratch_dir() + "/short.bin";
  write_bytes(path, std::vector<char>(100, 'x'));
  expect_user_error([&] { TokenShard shard(path); }, {path, "100 bytes", "1024-byte header"});
}

TEST(Shard, DirectoryIsRefused) {
  const std::string path = scratch_dir();
  expect_user_error([&] { TokenShard shard(path); }, {path, "not a regular file"});
}

TEST(Shard, UnwritableDestinationIsAUserError) {
  const std::string path = scratch_dir() + "/no/such/dir/shard.bin";
  expect_user_error([&] { write_shard(path, {1}, ShardMetadata{}); }, {path + ".tmp"});
}

}  // namespace
}  // namespace baleine::data
