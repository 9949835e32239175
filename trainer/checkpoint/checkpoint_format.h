#pragma once
// The on-disk form of a checkpoint, independent of the layout that wrote it.
//
//   RUN_DIR/checkpoints/step-000120/
//     manifest.json        what the checkpoint holds (Manifest below), written last
//     shard-00000.bin ...  one per writing rank: raw little-endian tensor bytes, no header
//     config.yaml          the resolved config of the run that wrote it (for humans and diffs)
//     DONE                 written after everything above is fsync'd and the directory renamed
//
// Tensors are stored in global coordinates: a Record is an element range [begin, end) of one
// whole tensor (by its global name and full shape), so a checkpoint written by 4 ranks
// (PP=2 × EP=2, ZeRO-1 moment shards) is read by 2 ranks or by one process, each assembling
// exactly the ranges it holds. Every element of every tensor is written by exactly one rank.
//
// Write protocol (checkpoint_store.h): shards and the manifest go into
// checkpoints/.tmp-step-000120/, each file fsync'd; the directory is fsync'd and renamed to
// step-000120; then DONE is written and fsync'd, then the parent directory. A directory without
// DONE is never loaded (a kill at any moment leaves either the previous checkpoints or a new,
// complete one). Pruning old checkpoints deletes DONE first.
#include <cstdint>
#include <string>
#include <vector>

namespace baleine::ckpt {

constexpr int kFormatVersion = 1;

// Element types stored: FP32 (master weights, FP32 moments, expert biases) and BF16 (moments
// under precision.optimizer_state: bf16, stored as their 16-bit codes).
enum class DType { kF32, kBF16 };
const char* dtype_name(DType t);  // "f32" | "bf16"
int64_t dtype_bytes(DType t);     // 4 | 2

// What a record holds. Parameters and moments share the tensor's name ("blocks.1.attention.wq");
// a MoE layer's routing bias is named "blocks.<L>.moe.bias" with kind kExpertBias.
enum class Kind { kParam, kAdamM, kAdamV, kExpertBias };
const char* kind_name(Kind k);  // "param" | "adam_m" | "adam_v" | "expert_bias"

struct Record {
  std::string name;
  Kind kind = Kind::kParam;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // of the whole tensor
  int64_t begin = 0, end = 0;  // flattened element range held by this record
  int shard = 0;               // index into Manifest::shards
  int64_t offset = 0;          // byte offset in that shard's file
  int64_t bytes() const { return (end - begin) * dtype_bytes(dtype); }
};

struct ShardFile {
  std::string file;      // "shard-00003.bin", relative to the checkpoint directory
  int rank = 0;          // the world rank that wrote it
  int64_t bytes = 0;
  uint32_t crc32c = 0;   // of the whole file (Castagnoli polynomial, as in iSCSI/ext4)
};

// The layout that wrote the checkpoint (informational, and to know whether a resume is on the
// same layout, which promises a bitwise-identical trajectory; a different one is a reshard).
struct WriterLayout {
  int world = 1, pp = 1, dp = 1, ep = 1;
  std::string schedule;  // parallel.schedule
  bool zero = false;
};

// Where the GPU-hour ledger stood when the checkpoint was taken.
struct LedgerPosition {
  int64_t restart = 0;        // which restart of the run dir wrote the checkpoint
  int64_t ledger_bytes = 0;   // size of ledger.jsonl just before this checkpoint's record
  double device_seconds = 0;  // device-seconds of the whole run dir up to the checkpoint
};

// The numerical guard's memory (trainer/train/numerical_guard.h), so a resumed run makes the
// same skip decisions as an uninterrupted one.
struct GuardState {
  std::vector<double> recent_losses;  // oldest first
  int64_t consecutive_skips = 0;
  int64_t total_skips = 0;
  int64_t rollbacks = 0;
};

struct Manifest {
  int version = kFormatVersion;
  std::string baleine_version;
  std::string created;     // UTC, ISO 8601
  int64_t step = 0;        // optimizer steps completed
  int64_t tokens = 0;      // tokens trained up to `step`
  // The data cursor: the sampler is a pure function of (seed, batch index), so the cursor is
  // the next batch index. It runs ahead of step + 1 when the guard rolled back and skipped the
  // batches that led to the rollback.
  int64_t next_batch = 1;
  uint64_t seed = 0;       // run.seed: the sampler's and the initialisation's only randomness
  std::string model_hash;  // hash of the model section; a different model is refused
  std::string precision;   // precision.compute
  std::string optimizer_state;  // precision.optimizer_state: the moments' dtype
  std::string fp8_state = "none";  // FP8 scales are computed per call (nothing persists)
  WriterLayout layout;
  LedgerPosition ledger;
  GuardState guard;
  std::vector<ShardFile> shards;
  std::vector<Record> records;
};

// manifest.json text (pretty enough to read; doubles round-trip exactly).
std::string manifest_to_json(const Manifest& m);
// Parses manifest.json. Throws baleine::UserError naming `path` and what is wrong (not JSON,
// missing field, version newer than kFormatVersion, a record outside its shard, ...).
Manifest parse_manifest(const std::string& text, const std::string& path);

}  // namespace baleine::ckpt
