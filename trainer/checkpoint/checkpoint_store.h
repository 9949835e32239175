#pragma once
// Files and directories of checkpoints (the format: checkpoint_format.h). Nothing here talks
// to MPI: the trainer (trainer/train/checkpointing.h) runs the collective protocol
//   1. rank 0: prepare_temporary(run_dir, step)           → checkpoints/.tmp-step-N/ (empty)
//   2. barrier; every writing rank: ShardWriter → shard-RRRRR.bin + write_shard_index(...)
//   3. barrier; rank 0: read_shard_indexes(...), fill the manifest, commit(...)
//   4. rank 0: prune(run_dir, keep)
// and reads with find_checkpoints / verify_shards / TensorReader.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trainer/checkpoint/checkpoint_format.h"

namespace baleine::ckpt {

// CRC-32C (Castagnoli), continuing from `crc` (0 to start). Uses the SSE4.2 instruction when
// the CPU has it, a table otherwise; both give the same value.
uint32_t crc32c(const void* data, size_t bytes, uint32_t crc = 0);

// Fault injection for the kill-during-write tests: when set, called at every point of the
// write protocol where a kill could land (before and after each chunk of a shard, each fsync,
// rename, the manifest, DONE, each pruned directory); `point` counts calls from 0 within this
// process. Small chunks are used while a hook is set, so a shard offers many points.
using KillPointHook = std::function<void(int64_t point, const char* what)>;
void set_kill_point_hook(KillPointHook hook);

// "step-000120" (zero-padded to 6 digits, more when needed), and its parse.
std::string checkpoint_dir_name(int64_t step);
std::optional<int64_t> parse_checkpoint_dir_name(const std::string& name);
std::string checkpoints_root(const std::string& run_dir);  // RUN_DIR/checkpoints

struct CheckpointEntry {
  std::string path;      // the checkpoint directory
  int64_t step = 0;
  bool complete = false; // has DONE (and manifest.json)
};
// Every step-N directory under RUN_DIR/checkpoints, newest (highest step) first; temporaries
// (.tmp-*) and trash are not listed. Missing directory: empty.
std::vector<CheckpointEntry> find_checkpoints(const std::string& run_dir);
// Whether `dir` is a complete checkpoint (DONE and manifest.json present).
bool is_complete_checkpoint(const std::string& dir);
// The newest complete checkpoint of the run dir whose step is below `before` (any step by
// default), or nothing: what a resume starts from, and what an error offers instead.
std::optional<std::string> newest_complete_checkpoint(const std::string& run_dir,
                                                      int64_t before = INT64_MAX);

// Step 1 (rank 0): removes leftover temporaries of killed writers, then creates an empty
// checkpoints/.tmp-step-N/ and returns its path. Throws UserError when it cannot.
std::string prepare_temporary(const std::string& run_dir, int64_t step);

// Step 2: one rank's shard, written in order; bytes are checksummed as they go.
class ShardWriter {
 public:
  // Opens <dir>/shard-RRRRR.bin for writing. Throws UserError (naming the file) on failure.
  ShardWriter(const std::string& dir, int rank);
  ~ShardWriter();  // closes without fsync if finish() was not called
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends the record's bytes (record.bytes() of them); fills record.offset, and record.shard
  // with `rank` (the trainer renumbers shards when it builds the manifest).
  void append(Record& record, const void* data);
  // Flushes and fsyncs; returns the file's description. Throws UserError on a write error
  // (disk full: the hint says so).
  ShardFile finish();
  const std::vector<Record>& records() const { return records_; }

 private:
  std::string path_;
  int rank_;
  int fd_ = -1;
  int64_t bytes_ = 0;
  uint32_t crc_ = 0;
  std::vector<Record> records_;
};

// Step 2, after finish(): <dir>/index-RRRRR.json (the shard file's description and its
// records), fsync'd: how rank 0 learns what every rank wrote without a variable-size gather.
void write_shard_index(const std::string& dir, const ShardFile& shard,
                       const std::vector<Record>& records);
// Step 3 (rank 0): reads index-00000.json ... index-<world-1>.json where present (ranks that
// wrote nothing write no index), appends their shards to m.shards and records to m.records
// (renumbering record.shard), and deletes the index files. Throws UserError naming a missing
// or malformed index.
void read_shard_indexes(const std::string& dir, int world, Manifest& m);

// Step 3 (rank 0): writes manifest.json (and config.yaml with `config_yaml`) into the
// temporary, fsyncs, renames it to checkpoints/step-N, fsyncs the parent, writes DONE, fsyncs.
// Returns the final path. Throws UserError when a step fails (the temporary is left for the
// next prepare_temporary to clean).
std::string commit(const std::string& temporary, const Manifest& m, const std::string& config_yaml);

// Step 4 (rank 0): keeps the `keep` newest complete checkpoints and deletes older ones (and
// incomplete step-N directories older than the newest complete one), DONE first, so a kill
// mid-delete never leaves something that looks complete. Returns the deleted paths.
std::vector<std::string> prune(const std::string& run_dir, int64_t keep);

// Reads <checkpoint>/manifest.json (UserError naming the file when missing or malformed).
Manifest read_manifest(const std::string& checkpoint_dir);

// Checks size and CRC-32C of the shards i with i % stride == offset (ranks split the work:
// offset = rank, stride = world). Returns "" when all match, else a message naming the first
// bad file and what is wrong ("shard-00002.bin: checksum mismatch (expected 1a2b3c4d, got ...)",
// "... is 1200 bytes, the manifest says 4096 (truncated)", "... is missing").
std::string verify_shards(const std::string& checkpoint_dir, const Manifest& m, int offset = 0,
                          int stride = 1);

// Assembles element ranges of tensors from whichever records (and shards) hold them.
class TensorReader {
 public:
  // Keeps a reference to `manifest`, which must outlive the reader.
  TensorReader(std::string checkpoint_dir, const Manifest& manifest);
  TensorReader(std::string checkpoint_dir, Manifest&& manifest) = delete;
  // Whether any record holds (name, kind).
  bool has(const std::string& name, Kind kind) const;
  // The full shape of (name, kind) as recorded; UserError when absent.
  const std::vector<int64_t>& shape(const std::string& name, Kind kind) const;
  // Copies elements [begin, end) of (name, kind) into dst, converting nothing: `dtype` must be
  // the stored dtype. Throws UserError (naming the checkpoint and the tensor) when the records
  // do not cover the range, the dtype differs, or a shard cannot be read.
  void read(const std::string& name, Kind kind, DType dtype, int64_t begin, int64_t end,
            void* dst) const;

 private:
  // The records of each (name, kind), so a whole-model load is linear in the records.
  const std::vector<const Record*>& records_of(const std::string& name, Kind kind) const;

  std::string dir_;
  const Manifest& manifest_;
  std::map<std::pair<std::string, Kind>, std::vector<const Record*>> index_;
};

}  // namespace baleine::ckpt
