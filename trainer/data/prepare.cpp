// `baleine data prepare`: text files -> byte-level token shards (token = byte value, and
// config::kEndOfTextToken after each document).
//
// Two passes so memory stays bounded by one shard whatever the corpus size: the first pass
// finds the documents and their sizes (the split point needs the total), the second streams the
// bytes into shards. A file whose size changed between the passes is an error, not a silently
// different corpus.
#include "trainer/data/prepare.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <ostream>
#include <system_error>

#include "trainer/config/config.h"  // kByteTokens, kEndOfTextToken only (header-only constants)
#include "trainer/data/shard.h"
#include "trainer/errors.h"

namespace baleine::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kByteVocabSize = config::kByteTokens + 1;  // bytes and end-of-text
constexpr size_t kReadChunkBytes = 1 << 20;

struct Document {
  std::string path;
  int64_t bytes = 0;
};

struct CorpusScan {
  std::vector<Document> documents;
  int64_t total_bytes = 0;
  std::vector<std::string> skipped_binary;     // found by walking and holding a NUL byte
  std::vector<std::string> skipped_dir_links;  // not followed: a link back up would loop
};

using FileHandle = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

FileHandle open_for_reading(const std::string& path) {
  FileHandle file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    throw UserError(path, "", "cannot read input file: " + std::error_code(errno,
                    std::generic_category()).message());
  }
  return file;
}

// Calls consume(chunk, bytes) for the whole file; returns the number of bytes read.
template <typename Consume>
int64_t read_in_chunks(const std::string& path, Consume consume) {
  FileHandle file = open_for_reading(path);
  std::vector<unsigned char> chunk(kReadChunkBytes);
  int64_t total = 0;
  while (true) {
    const size_t got = std::fread(chunk.data(), 1, chunk.size(), file.get());
    if (got > 0) {
      consume(chunk.data(), got);
      total += static_cast<int64_t>(got);
    }
    if (got < chunk.size()) break;
  }
  if (std::ferror(file.get())) throw UserError(path, "", "read error in input file");
  return total;
}

// A NUL byte marks a binary file (images, archives, compiled objects): text never holds one.
bool holds_nul_byte(const std::string& path, int64_t* bytes) {
  bool found = false;
  *bytes = read_in_chunks(path, [&](const unsigned char* data, size_t size) {
    if (!found) found = std::find(data, data + size, 0) != data + size;
  });
  return found;
}

std::vector<fs::directory_entry> sorted_entries(const fs::path& dir) {
  std::vector<fs::directory_entry> entries{fs::directory_iterator(dir), fs::directory_iterator()};
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.path().filename().string() < b.path().filename().string();
  });
  return entries;
}

// Depth-first in name order, so the document order (and thus the shards) is reproducible.
void walk_directory(const fs::path& dir, CorpusScan& scan) {
  for (const fs::directory_entry& entry : sorted_entries(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;  // .git, .DS_Store, editor swap files
    const std::string path = entry.path().string();
    if (entry.is_symlink() && entry.is_directory()) {
      scan.skipped_dir_links.push_back(path);
    } else if (entry.is_directory()) {
      walk_directory(entry.path(), scan);
    } else if (entry.is_regular_file()) {
      int64_t bytes = 0;
      if (holds_nul_byte(path, &bytes)) {
        scan.skipped_binary.push_back(path);
      } else {
        scan.documents.push_back({path, bytes});
        scan.total_bytes += bytes;
      }
    }
  }
}

CorpusScan scan_inputs(const std::vector<std::string>& inputs) {
  CorpusScan scan;
  for (const std::string& input : inputs) {
    std::error_code error;
    const fs::file_status status = fs::status(input, error);
    if (status.type() == fs::file_type::not_found) {
      throw UserError(input, "", "input not found",
                      "check the path given to --input (files or directories of text)");
    }
    if (error) throw UserError(input, "", "cannot access input: " + error.message());
    try {
      if (fs::is_directory(status)) {
        walk_directory(input, scan);
      } else {
        // Named explicitly: taken even when it looks binary, the user asked for it.
        open_for_reading(input);
        const int64_t bytes = static_cast<int64_t>(fs::file_size(input));
        scan.documents.push_back({input, bytes});
        scan.total_bytes += bytes;
      }
    } catch (const fs::filesystem_error& failure) {
      throw UserError(failure.path1().empty() ? input : failure.path1().string(), "",
                      "cannot read input: " + failure.code().message());
    }
  }
  return scan;
}

// Validation split size. The split is at a token position, not a document boundary, exactly as
// the contract says ("the last val_fraction of the token stream"). A split that would be shorter
// than 2 tokens holds not even one (input, target) pair; rather than silently dropping or
// enlarging it, we refuse and name the two ways out.
int64_t validation_tokens(double val_fraction, int64_t total_tokens) {
  if (val_fraction == 0.0) return 0;
  const int64_t val = std::llround(val_fraction * static_cast<double>(total_tokens));
  if (val < 2 || total_tokens - val < 2) {
    throw UserError("", "val_fraction",
                    "a corpus of " + std::to_string(total_tokens) + " tokens split with " +
                        "val_fraction " + std::to_string(val_fraction) + " gives " +
                        std::to_string(val) + " validation and " +
                        std::to_string(total_tokens - val) +
                        " training tokens; each split needs at least 2",
                    "add more text, or set --val-fraction 0 for no validation split");
  }
  return val;
}

// Removes train_*.bin / val_*.bin (and leftover .tmp files of an interrupted run) so that a
// re-run with a smaller corpus does not leave old shards behind for a directory source to read.
int64_t remove_stale_shards(const fs::path& dir) {
  int64_t removed = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool split_prefix = name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0;
    const auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (split_prefix && (ends_with(".bin") || ends_with(".bin.tmp")) &&
        !entry.is_directory()) {
      fs::remove(entry.path());
      ++removed;
    }
  }
  return removed;
}

// Cuts one split's token stream into files <split>_000000.bin, <split>_000001.bin, ...
class ShardSeriesWriter {
 public:
  ShardSeriesWriter(fs::path dir, std::string split, int64_t shard_tokens, int64_t split_tokens)
      : dir_(std::move(dir)), split_(std::move(split)), shard_tokens_(shard_tokens) {
    buffer_.reserve(static_cast<size_t>(std::min(shard_tokens, split_tokens)));
  }

  void push(uint16_t token) {
    buffer_.push_back(token);
    if (token == config::kEndOfTextToken) ++documents_;
    if (static_cast<int64_t>(buffer_.size()) == shard_tokens_) flush();
  }

  void finish() {
    if (!buffer_.empty()) flush();
  }

  const std::vector<std::string>& paths() const { return paths_; }

 private:
  void flush() {
    char name[64];
    std::snprintf(name, sizeof(name), "%s_%06zu.bin", split_.c_str(), paths_.size());
    const std::string path = (dir_ / name).string();
    ShardMetadata metadata;
    metadata.vocab_size = kByteVocabSize;
    metadata.end_of_text = config::kEndOfTextToken;
    // The documents that end in this shard; one spanning several shards counts in its last.
    metadata.documents = documents_;
    write_shard(path, buffer_, metadata);
    paths_.push_back(path);
    buffer_.clear();
    documents_ = 0;
  }

  fs::path dir_;
  std::string split_;
  int64_t shard_tokens_;
  std::vector<uint16_t> buffer_;
  int64_t documents_ = 0;
  std::vector<std::string> paths_;
};

void check_options(const PrepareOptions& options) {
  if (options.inputs.empty()) {
    throw UserError("", "inputs", "no input files given",
                    "pass --input with one or more text files or directories");
  }
  if (options.output_dir.empty()) {
    throw UserError("", "output_dir", "no output directory given",
                    "pass --output DIR (created if missing)");
  }
  if (!(options.val_fraction >= 0.0 && options.val_fraction < 1.0)) {
    throw UserError("", "val_fraction",
                    "must be in [0, 1), got " + std::to_string(options.val_fraction),
                    "use e.g. --val-fraction 0.1 (the last 10% of tokens)");
  }
  if (options.shard_tokens < 1 || options.shard_tokens > std::numeric_limits<int32_t>::max()) {
    throw UserError("", "shard_tokens",
                    "must be in [1, 2147483647] (the shard header counts tokens in an int32), "
                    "got " + std::to_string(options.shard_tokens),
                    "the default of 100000000 tokens makes 200 MB shards");
  }
}

void prepare_output_directory(const std::string& output_dir) {
  std::error_code error;
  fs::create_directories(output_dir, error);
  if (!fs::is_directory(output_dir)) {
    throw UserError(output_dir, "", "cannot create output directory" +
                                        (error ? ": " + error.message() : std::string()),
                    "choose a writable --output path");
  }
}

}  // namespace

PrepareSummary prepare_byte_corpus(const PrepareOptions& options, std::ostream& log) {
  check_options(options);
  const CorpusScan scan = scan_inputs(options.inputs);
  if (scan.documents.empty()) {
    throw UserError("", "inputs", "no text files found in the inputs (only hidden or binary ones)",
                    "pass text files, or directories holding them");
  }
  const int64_t document_count = static_cast<int64_t>(scan.documents.size());
  const int64_t total_tokens = scan.total_bytes + document_count;  // + one end-of-text each
  const int64_t val_tokens = validation_tokens(options.val_fraction, total_tokens);
  const int64_t train_tokens = total_tokens - val_tokens;

  // Inputs are all valid by now: only then touch the output directory.
  prepare_output_directory(options.output_dir);
  int64_t removed = 0;
  try {
    removed = remove_stale_shards(options.output_dir);
  } catch (const fs::filesystem_error& failure) {
    throw UserError(options.output_dir, "",
                    "cannot remove an old shard: " + failure.code().message());
  }

  ShardSeriesWriter train(options.output_dir, "train", options.shard_tokens, train_tokens);
  ShardSeriesWriter val(options.output_dir, "val", options.shard_tokens, val_tokens);
  int64_t emitted = 0;
  const auto emit = [&](uint16_t token) {
    (emitted < train_tokens ? train : val).push(token);
    ++emitted;
  };
  for (const Document& document : scan.documents) {
    const int64_t bytes = read_in_chunks(document.path, [&](const unsigned char* data,
                                                            size_t size) {
      for (size_t i = 0; i < size; ++i) emit(data[i]);
    });
    if (bytes != document.bytes) {
      throw UserError(document.path, "",
                      "input changed while preparing (" + std::to_string(document.bytes) +
                          " bytes, then " + std::to_string(bytes) + ")",
                      "re-run once the file is no longer being written");
    }
    emit(static_cast<uint16_t>(config::kEndOfTextToken));
  }
  train.finish();
  val.finish();

  PrepareSummary summary;
  summary.documents = document_count;
  summary.train_tokens = train_tokens;
  summary.val_tokens = val_tokens;
  summary.train_shards = train.paths();
  summary.val_shards = val.paths();

  log << "data prepare: " << document_count << " documents, " << scan.total_bytes
      << " bytes -> " << options.output_dir << " (vocab " << kByteVocabSize << ", end-of-text "
      << config::kEndOfTextToken << ")\n"
      << "  train: " << train_tokens << " tokens in " << summary.train_shards.size()
      << " shard file(s)\n"
      << "  val:   " << val_tokens << " tokens in " << summary.val_shards.size()
      << " shard file(s)\n";
  if (!scan.skipped_binary.empty()) {
    log << "  skipped " << scan.skipped_binary.size()
        << " binary file(s) found in directories (first: " << scan.skipped_binary.front()
        << ")\n";
  }
  for (const std::string& link : scan.skipped_dir_links) {
    log << "  not followed: directory link " << link << "\n";
  }
  if (removed > 0) log << "  removed " << removed << " old shard file(s) first\n";
  return summary;
}

}  // namespace baleine::data
