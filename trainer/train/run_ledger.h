#pragma once
// The trainer's side of the GPU-hour ledger (trainer/cost/ledger.h). Every rank times its own
// segments with a SegmentClock started at its process start; after every step the totals are
// summed over the world onto rank 0, which appends a progress record to RUN_DIR/ledger.jsonl
// when ledger.flush_every_s has passed, and an end record when the run completes. On start,
// rank 0 numbers this restart and, when the previous restart in the run dir left no end record
// (it was killed or crashed), appends a "lost" record for it.
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "parallel/process_groups.h"
#include "trainer/checkpoint/checkpoint_format.h"
#include "trainer/config/config.h"
#include "trainer/cost/device_rates.h"
#include "trainer/cost/flops.h"
#include "trainer/cost/ledger.h"
#include "trainer/cost/segment_clock.h"

namespace baleine::train {

class RunDir;

// When this process started (marked by the CLI before MPI starts; the first call marks it).
struct ProcessStart {
  std::chrono::steady_clock::time_point steady;
  double unix_time = 0;
};
const ProcessStart& process_start();

// "0.0123 CPU-hours, $0.0246 at $2 per device-hour"
std::string format_cost_summary(double device_hours, const cost::DeviceRates& rates);

class RunLedger {
 public:
  // Collective over the world. `dir` is rank 0's run dir (nullptr on the other ranks).
  RunLedger(const config::RunConfig& config, parallel::ProcessGroups& groups, RunDir* dir,
            const cost::FlopsPerToken& flops, std::ostream& out);
  ~RunLedger();

  cost::SegmentClock& clock() { return clock_; }
  const cost::DeviceRates& rates() const { return rates_; }

  // Collective: at the end of every step (tokens: trained by this restart so far).
  void after_step(int64_t step, int64_t tokens);
  // Collective: the end record (status "completed" or "stopped").
  void finish(int64_t step, int64_t tokens, const std::string& status);
  // Collective: a checkpoint record (always written and fsync'd), once a checkpoint is complete;
  // a crash after it loses only the work after this record.
  void checkpoint(int64_t step, int64_t tokens);
  // Rank 0: where the ledger stands, for the checkpoint's manifest (zeros on other ranks).
  ckpt::LedgerPosition position() const;
  // A rollback (numerical guard) threw away this rank's work since `since` (its clock's totals
  // when the checkpoint it returns to was saved or loaded): that time becomes lost work.
  void discard_work_since(const cost::SegmentSeconds& since);

  // Rank 0, after after_step: device-hours of every restart of this run dir so far (earlier
  // restarts, lost work included, plus this one), and a projection of the whole run's
  // device-hours at this restart's rate per step.
  double device_hours_so_far() const;
  double projected_device_hours(int64_t step, int64_t total_steps) const;
  int64_t restart() const { return restart_; }

 private:
  cost::LedgerTick gather(const std::string& type, int64_t step, int64_t tokens);

  parallel::ProcessGroups& groups_;
  cost::SegmentClock clock_;
  cost::DeviceRates rates_;
  std::unique_ptr<cost::LedgerWriter> writer_;  // rank 0
  std::string path_;                // ledger.jsonl (rank 0)
  int64_t restart_ = 0;
  double earlier_device_s_ = 0;     // restarts before this one
  cost::SegmentSeconds current_{};  // this restart's totals over all ranks (rank 0)
};

}  // namespace baleine::train
