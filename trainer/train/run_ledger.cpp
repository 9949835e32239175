#include "trainer/train/run_ledger.h"

#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <ostream>

#include "trainer/cost/units.h"
#include "trainer/errors.h"
#include "trainer/train/progress.h"
#include "trainer/train/agreement.h"
#include "trainer/train/run_dir.h"

namespace baleine::train {

namespace {

using parallel::DType;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// When a file was last written (unix seconds), or 0.
double modified_unix_time(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<double>(st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(st.st_mtim.tv_nsec);
}

// The previous restart left no end record and nobody has accounted for it yet: its work after
// its last checkpoint is lost. How long it ran after its last ledger record is unknown; the
// newest write to its metrics file (one line per step) bounds it from below.
std::optional<cost::LedgerLost> find_lost_restart(const cost::LedgerContents& ledger,
                                                  const std::string& kept_metrics,
                                                  int64_t found_by) {
  if (ledger.restarts.empty()) return std::nullopt;
  const cost::RestartRecord& last = ledger.restarts.back();
  if (last.ended || last.has_lost) return std::nullopt;
  const double last_record = last.has_tick ? last.last.unix_time : last.start.unix_time;
  cost::LedgerLost lost;
  lost.restart = last.start.restart;
  lost.found_by = found_by;
  lost.estimated_end_unix_time = std::max(last_record, modified_unix_time(kept_metrics));
  lost.unrecorded_device_s =
      (lost.estimated_end_unix_time - last_record) * static_cast<double>(last.start.world);
  return lost;
}

}  // namespace

const ProcessStart& process_start() {
  static const ProcessStart start{std::chrono::steady_clock::now(), unix_now()};
  return start;
}

std::string format_cost_summary(double device_hours, const cost::DeviceRates& rates) {
  return cost::format_hours(device_hours) + (rates.kind == "cpu" ? " CPU" : " GPU") +
         "-hours, " + cost::format_usd(device_hours * rates.usd_per_hour) + " at " +
         cost::format_usd(rates.usd_per_hour) + " per device-hour";
}

RunLedger::RunLedger(const config::RunConfig& c, parallel::ProcessGroups& g, RunDir* dir,
                     const cost::FlopsPerToken& flops, std::ostream& out)
    : groups_(g),
      clock_(process_start().steady),
      rates_(cost::device_rates(c.cost, omp_get_max_threads())) {
  // Rank 0 reads and appends; a failure there must end every rank, not strand them.
  run_agreed(*g.world, [&] {
    if (dir) {
      const std::string path = dir->file("ledger.jsonl");
      path_ = path;
      cost::LedgerContents earlier;
      if (std::filesystem::exists(path)) earlier = cost::read_ledger(path);
      for (const auto& p : earlier.problems) {
        out << "warning: " << path << ":" << p.line << ": " << p.message << " (skipped)\n";
      }
      restart_ = earlier.restarts.empty() ? 0 : earlier.restarts.back().start.restart + 1;
      const auto lost = find_lost_restart(earlier, dir->metrics().kept_previous(), restart_);
      for (const auto& r : earlier.restarts) earlier_device_s_ += cost::total_seconds(r.segments);
      writer_ = std::make_unique<cost::LedgerWriter>(path, c.ledger.flush_every_s);
      if (lost) {
        writer_->write(*lost);
        const auto& crashed = earlier.restarts.back();
        const double lost_s =
            crashed.segments[static_cast<size_t>(cost::Segment::kLostWork)] +
            lost->unrecorded_device_s;
        earlier_device_s_ += lost->unrecorded_device_s;
        out << "note: restart " << lost->restart << " in this run dir has no end record (killed "
            << "or crashed); " << lost_s / 3600.0 << " device-hours of it are lost work"
            << (crashed.has_checkpoint ? " (after its last checkpoint)" : "") << "\n";
      }
      cost::LedgerStart s;
      s.restart = restart_;
      s.unix_time = process_start().unix_time;
      s.world = g.world->size();
      s.run_name = c.run.name;
      s.config = c.source;
      s.phase = c.cost.phase;
      s.compute = c.precision.compute;
      s.gpu = rates_.gpu;
      s.device_kind = rates_.kind;
      s.peak_bf16_tflops = rates_.peak_bf16_tflops;
      s.peak_fp8_tflops = rates_.peak_fp8_tflops;
      s.usd_per_gpu_hour = rates_.usd_per_hour;
      s.flops_per_token = flops.total;
      s.active_params = flops.active_params;
      s.tokens_per_step = c.train.global_batch * c.train.seq_len;
      s.total_steps = c.train.steps;
      s.token_budget = c.cost.token_budget > 0
                           ? c.cost.token_budget
                           : static_cast<double>(c.train.steps * s.tokens_per_step);
      writer_->write(s);
    }
  });
}

RunLedger::~RunLedger() = default;

cost::LedgerTick RunLedger::gather(const std::string& type, int64_t step, int64_t tokens) {
  const cost::SegmentSeconds mine = clock_.totals();
  std::copy(mine.begin(), mine.end(), current_.begin());
  groups_.world->allreduce_sum(current_.data(), static_cast<int64_t>(current_.size()),
                               DType::kFloat64);
  cost::LedgerTick tick;
  tick.type = type;
  tick.restart = restart_;
  tick.unix_time = process_start().unix_time + clock_.wall_s();
  tick.wall_s = clock_.wall_s();
  tick.step = step;
  tick.tokens = tokens;
  tick.segments = current_;
  return tick;
}

void RunLedger::after_step(int64_t step, int64_t tokens) {
  const cost::LedgerTick tick = gather("progress", step, tokens);
  if (writer_) writer_->write(tick);
}

void RunLedger::finish(int64_t step, int64_t tokens, const std::string& status) {
  clock_.switch_to(cost::Segment::kIdle);
  cost::LedgerTick tick = gather("end", step, tokens);
  tick.status = status;
  if (writer_) writer_->write(tick);
}

void RunLedger::checkpoint(int64_t step, int64_t tokens) {
  const cost::LedgerTick tick = gather("checkpoint", step, tokens);
  if (writer_) writer_->write(tick);
}

ckpt::LedgerPosition RunLedger::position() const {
  ckpt::LedgerPosition p;
  if (!writer_) return p;
  p.restart = restart_;
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path_, ec);
  p.ledger_bytes = ec ? 0 : static_cast<int64_t>(bytes);
  p.device_seconds = earlier_device_s_ + cost::total_seconds(current_);
  return p;
}

void RunLedger::discard_work_since(const cost::SegmentSeconds& since) {
  clock_.switch_to(clock_.running());  // close the running stretch, so all of it can move
  const cost::SegmentSeconds now = clock_.totals();
  for (size_t s = 0; s < cost::kSegmentCount; ++s) {
    const auto segment = static_cast<cost::Segment>(s);
    if (segment != cost::Segment::kLostWork) {
      clock_.move(segment, cost::Segment::kLostWork, now[s] - since[s]);
    }
  }
}

double RunLedger::device_hours_so_far() const {
  return (earlier_device_s_ + cost::total_seconds(current_)) / 3600.0;
}

double RunLedger::projected_device_hours(int64_t step, int64_t total_steps) const {
  if (step <= 0) return device_hours_so_far();
  const double startup = current_[static_cast<size_t>(cost::Segment::kStartup)];
  const double per_step = (cost::total_seconds(current_) - startup) / static_cast<double>(step);
  return (earlier_device_s_ + startup + per_step * static_cast<double>(total_steps)) / 3600.0;
}

}  // namespace baleine::train
