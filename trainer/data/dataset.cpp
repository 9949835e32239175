// A token stream over shards, and the stateless sampler that cuts sequence windows from it.
#include "trainer/data/dataset.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "trainer/errors.h"

namespace baleine::data {
namespace {

bool is_regular_file(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// Shards of a directory: every regular *.bin file directly inside it (not recursive, so an
// output directory with a nested "old/" copy is not read twice). Hidden files are left out.
std::vector<std::string> shards_in_directory(const std::string& dir) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || entry.path().extension() != ".bin") continue;
    if (entry.is_regular_file()) paths.push_back(entry.path().string());
  }
  return paths;
}

std::vector<std::string> shards_matching_glob(const std::string& pattern) {
  std::vector<std::string> paths;
  glob_t matches{};
  // GLOB_NOMATCH and read errors alike mean "no shards here"; the caller reports the pattern.
  if (::glob(pattern.c_str(), 0, nullptr, &matches) == 0) {
    for (size_t i = 0; i < matches.gl_pathc; ++i) {
      if (is_regular_file(matches.gl_pathv[i])) paths.emplace_back(matches.gl_pathv[i]);
    }
  }
  ::globfree(&matches);
  return paths;
}

// Resolves `source` to a sorted list of shard paths. Sorted by name so that the stream, and
// therefore every sampled window, is the same on every machine and every run.
std::vector<std::string> resolve_shard_paths(const std::string& source) {
  std::vector<std::string> paths;
  if (is_regular_file(source)) {
    paths.push_back(source);
  } else if (is_directory(source)) {
    paths = shards_in_directory(source);
  } else {
    paths = shards_matching_glob(source);
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// The largest token is found with a branch-free loop (vectorizes; this scans every token of the
// corpus once at open); only when it is out of range do we look for where.
void check_tokens_below_vocab(const TokenShard& shard, const std::string& key,
                              int64_t vocab_size) {
  const uint16_t* tokens = shard.tokens();
  const int64_t count = shard.size();
  uint16_t largest = 0;
  for (int64_t i = 0; i < count; ++i) largest = std::max(largest, tokens[i]);
  if (count == 0 || largest < vocab_size) return;
  int64_t index = 0;
  while (tokens[index] < vocab_size) ++index;
  throw UserError(shard.path(), key,
                  "token " + std::to_string(tokens[index]) + " at index " +
                      std::to_string(index) + " is not below the vocabulary size " +
                      std::to_string(vocab_size),
                  "the shard was made with a larger vocabulary: raise model.vocab_size to at "
                  "least " + std::to_string(largest + 1) + " or re-create the shards");
}

}  // namespace

TokenDataset TokenDataset::open(const std::string& source, const std::string& key,
                                const std::string& where, int64_t vocab_size,
                                int64_t min_tokens) {
  if (vocab_size <= 0) throw std::invalid_argument("TokenDataset::open: vocab_size must be > 0");
  std::vector<std::string> paths;
  try {
    paths = resolve_shard_paths(source);
  } catch (const std::filesystem::filesystem_error& error) {
    throw UserError(where, key, "cannot list token shards in '" + source + "': " +
                                    error.code().message());
  }
  if (paths.empty()) {
    throw UserError(where, key, "no token shards match '" + source + "'",
                    "run `baleine data prepare --input FILES --output DIR` and point " + key +
                        " at DIR");
  }

  TokenDataset dataset;
  dataset.shards_.reserve(paths.size());
  for (const std::string& path : paths) {
    TokenShard shard(path);
    check_tokens_below_vocab(shard, key, vocab_size);
    dataset.starts_.push_back(dataset.total_);
    dataset.total_ += shard.size();
    dataset.shards_.push_back(std::move(shard));
  }
  if (dataset.total_ < min_tokens) {
    throw UserError(where, key,
                    "'" + source + "' holds " + std::to_string(dataset.total_) +
                        " tokens, but at least " + std::to_string(min_tokens) +
                        " are needed (one sequence plus its shifted target)",
                    "add more data, or lower the sequence length");
  }
  return dataset;
}

void TokenDataset::read(int64_t offset, int64_t count, int32_t* out) const {
  if (offset < 0 || count < 0 || offset + count > total_) {
    throw std::out_of_range("TokenDataset::read: [" + std::to_string(offset) + ", " +
                            std::to_string(offset + count) + ") outside a stream of " +
                            std::to_string(total_) + " tokens");
  }
  // The last shard starting at or before `offset`; empty shards share their start with the next
  // shard, and upper_bound skips past them.
  size_t shard = static_cast<size_t>(
      std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin() - 1);
  while (count > 0) {
    const TokenShard& current = shards_[shard];
    const int64_t local = offset - starts_[shard];
    const int64_t take = std::min(count, current.size() - local);
    std::copy(current.tokens() + local, current.tokens() + local + take, out);
    out += take;
    offset += take;
    count -= take;
    ++shard;
  }
}

namespace {

// SplitMix64's output function (Steele, Lea & Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): a bijective 64-bit mix with full avalanche.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A uniform integer in [0, range) from a counter-based hash: no generator state, so any rank can
// compute any row of any step. Lemire's multiply-and-reject ("Fast random integer generation in
// an interval", ACM TOMACS 2019) removes the bias a plain modulo would have; a rejected draw
// continues the SplitMix64 chain, which keeps the result a pure function of the inputs.
uint64_t uniform_below(uint64_t range, uint64_t hash) {
  const uint64_t threshold = (0 - range) % range;  // 2^64 mod range
  while (true) {
    const unsigned __int128 product = static_cast<unsigned __int128>(hash) * range;
    if (static_cast<uint64_t>(product) >= threshold) return static_cast<uint64_t>(product >> 64);
    hash = splitmix64(hash);
  }
}

}  // namespace

BatchSampler::BatchSampler(const TokenDataset& dataset, int64_t seq_len, uint64_t seed,
                           uint64_t stream)
    : dataset_(&dataset), seq_len_(seq_len), seed_(seed), stream_(stream) {
  if (seq_len <= 0 || dataset.size() < seq_len + 1) {
    throw std::invalid_argument("BatchSampler: a stream of " + std::to_string(dataset.size()) +
                                " tokens cannot give windows of " + std::to_string(seq_len) +
                                "+1 tokens (open the dataset with min_tokens = seq_len + 1)");
  }
}

void BatchSampler::fill(int64_t step, int64_t first_row, int64_t rows, int32_t* inputs,
                        int32_t* targets) const {
  // Starts p in [0, size - seq_len - 1], so the target window [p+1, p+seq_len+1) fits.
  const uint64_t start_count = static_cast<uint64_t>(dataset_->size() - seq_len_);
  const uint64_t stream_key = splitmix64(splitmix64(seed_) ^ stream_);
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t row = static_cast<uint64_t>(first_row + r);
    const uint64_t hash =
        splitmix64(splitmix64(stream_key ^ static_cast<uint64_t>(step)) ^ row);
    const int64_t start = static_cast<int64_t>(uniform_below(start_count, hash));
    dataset_->read(start, seq_len_, inputs + r * seq_len_);
    dataset_->read(start + 1, seq_len_, targets + r * seq_len_);
  }
}

}  // namespace baleine::data
