#pragma once
// RUN_DIR/ledger.jsonl: the GPU-hour ledger. Append-only JSON lines written by rank 0 alone
// with every rank's segment times gathered at each step; flushed and fsync'd at least every
// ledger.flush_every_s seconds, at every checkpoint and at the end, so a crash loses at most
// that much accounting. Each `baleine train` in a run directory is one restart (0, 1, ...);
// restarts append and totals sum across them.
//
// Records, one per line (all times in seconds; device-seconds summed over the ranks):
//   {"type":"start", "restart":R, ...LedgerStart}                 once, when a restart begins
//   {"type":"progress"|"checkpoint"|"end", "restart":R, ...LedgerTick}
//        cumulative within restart R: its segments since its ranks' process start
//   {"type":"lost", "restart":R, ...LedgerLost}   written by a later restart that found R
//        without an "end": R crashed or was killed
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/cost/segments.h"

namespace baleine::cost {

struct LedgerStart {
  int64_t restart = 0;       // 0 for the first train in this run dir, then 1, 2, ...
  double unix_time = 0;      // rank 0's process start
  int64_t world = 1;         // ranks = devices
  std::string run_name;
  std::string config;        // the YAML path
  std::string phase;         // cost.phase
  std::string compute;       // precision.compute
  std::string gpu;           // cost.gpu (a device_table() name)
  std::string device_kind;   // "gpu" or "cpu"
  double peak_bf16_tflops = 0;  // per device (cost.peak_tflops or the table)
  double peak_fp8_tflops = 0;   // 0 = none
  double usd_per_gpu_hour = 0;
  double flops_per_token = 0;   // training FLOPs per token (trainer/cost/flops.h)
  double active_params = 0;
  int64_t tokens_per_step = 0;
  int64_t total_steps = 0;      // train.steps
  int64_t start_step = 0;       // the step this restart resumed after (0 = from scratch)
  double token_budget = 0;      // cost.token_budget, or total_steps x tokens_per_step
};

struct LedgerTick {
  std::string type;          // "progress", "checkpoint" or "end"
  int64_t restart = 0;
  double unix_time = 0;
  double wall_s = 0;         // since rank 0's process start
  int64_t step = 0;          // the last completed step (global numbering)
  int64_t tokens = 0;        // tokens trained by this restart so far
  SegmentSeconds segments{};  // device-seconds, summed over ranks, cumulative in the restart
  std::string status;        // "end" only: "completed", "stopped" or "failed"
};

struct LedgerLost {
  int64_t restart = 0;            // the restart that crashed
  int64_t found_by = 0;           // the restart that found it
  // Device-seconds after the crashed restart's last record, estimated from when its run dir
  // was last written (its metrics file) times its world size.
  double unrecorded_device_s = 0;
  double estimated_end_unix_time = 0;
};

std::string format_ledger_json(const LedgerStart& start);
std::string format_ledger_json(const LedgerTick& tick);
std::string format_ledger_json(const LedgerLost& lost);

// A bad line: reported with its 1-based line number and skipped, never silently dropped.
struct LedgerProblem {
  int64_t line = 0;
  std::string message;
};

// One restart as read back, with its lost work worked out.
struct RestartRecord {
  LedgerStart start;
  bool has_tick = false;
  LedgerTick last;              // its newest progress/checkpoint/end record
  bool has_checkpoint = false;
  LedgerTick last_checkpoint;
  bool ended = false;           // has an "end" record
  bool has_lost = false;
  LedgerLost lost;
  // Derived by read_ledger:
  // outcome: "completed", "stopped", "failed", "crashed (found by restart N)" or
  // "no end record (still running, or crashed and not resumed)".
  std::string outcome;
  // Its segments with lost work moved out: for a restart without an end record, everything
  // after its last checkpoint (all of it without one) plus unrecorded_device_s is kLostWork.
  SegmentSeconds segments{};
  double wall_s = 0;
  int64_t useful_tokens = 0;    // tokens not lost (up to its last checkpoint when it crashed)
  int64_t last_step = 0;
};

struct LedgerContents {
  std::string path;
  int64_t lines = 0;
  std::vector<RestartRecord> restarts;  // in restart order
  std::vector<LedgerProblem> problems;  // bad lines, and records that contradict each other
};

// Reads RUN_DIR/ledger.jsonl (or a path to the file). Throws UserError naming the path when it
// cannot be opened. Bad lines go to problems, with their line numbers.
LedgerContents read_ledger(const std::string& path);

// Appends records to the ledger (rank 0). Every write is flushed; progress records are written
// when flush_every_s has passed since the last write, the others always; each write that lands
// is fsync'd. Throws UserError naming the file when it cannot be opened or written.
class LedgerWriter {
 public:
  LedgerWriter(const std::string& path, double flush_every_s);
  ~LedgerWriter();
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  void write(const LedgerStart& start);
  void write(const LedgerLost& lost);
  // progress: only when due (or force); checkpoint and end: always. Returns whether written.
  bool write(const LedgerTick& tick, bool force = false);
  const std::string& path() const { return path_; }

 private:
  void append_line(const std::string& line);
  std::string path_;
  double flush_every_s_;
  int fd_ = -1;
  double last_write_ = -1e300;  // steady clock seconds of the last write
};

}  // namespace baleine::cost
