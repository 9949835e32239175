#pragma once
// Token shards on disk. Two formats share one layout -- a header of 256 little-endian int32
// followed by uint16 tokens -- and differ by magic:
//   llm.c (karpathy/llm.c dev/data/data_common.py): header[0]=20240520, [1]=1 (version),
//         [2]=token count.
//   baleine: header[0]=kBaleineShardMagic, [1]=1, [2]=token count, [3]=vocab size,
//         [4]=end-of-text id, [5]=document count.
// Shards are memory-mapped read-only; a header that does not match the file size is refused.
#include <cstdint>
#include <string>
#include <vector>

namespace baleine::data {

constexpr int32_t kLlmcShardMagic = 20240520;
constexpr int32_t kBaleineShardMagic = 0x42414C45;  // "BALE"
constexpr int32_t kShardVersion = 1;
constexpr int64_t kShardHeaderInts = 256;

struct ShardMetadata {
  int64_t vocab_size = 0;   // 0 when the format does not say (llm.c)
  int32_t end_of_text = -1;
  int64_t documents = 0;
};

// Writes a baleine-format shard (atomically: temporary file, then rename).
void write_shard(const std::string& path, const std::vector<uint16_t>& tokens,
                 const ShardMetadata& metadata);

class TokenShard {
 public:
  // Throws UserError naming the file and what is wrong (missing, short, bad magic, truncated).
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }
  const uint16_t* tokens() const { return tokens_; }
  bool is_llmc() const { return llmc_; }
  const ShardMetadata& metadata() const { return metadata_; }

 private:
  void release();
  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t count_ = 0;
  bool llmc_ = false;
  ShardMetadata metadata_;
};

}  // namespace baleine::data
