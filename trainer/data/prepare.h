#pragma once
// `baleine data prepare`: byte-level tokenization of text files into baleine shards.
// Each input file is one document; documents are separated by the end-of-text token.
// The last `val_fraction` of the token stream becomes the validation split.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace baleine::data {

struct PrepareOptions {
  std::vector<std::string> inputs;   // files, or directories walked recursively (sorted)
  std::string output_dir;
  double val_fraction = 0.1;
  int64_t shard_tokens = 100'000'000;  // tokens per shard file (uint16 → 200 MB)
};

struct PrepareSummary {
  int64_t documents = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
};

// Writes <output_dir>/train_000000.bin, ... and <output_dir>/val_000000.bin, ... . Files found
// by walking a directory are skipped when they hold a NUL byte (binary); a file named
// explicitly is always taken. Throws UserError for missing inputs or an unwritable output.
PrepareSummary prepare_byte_corpus(const PrepareOptions& options, std::ostream& log);

}  // namespace baleine::data
