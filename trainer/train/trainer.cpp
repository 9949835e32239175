#include "trainer/train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <thread>
#include <optional>
#include <ostream>
#include <vector>

#include "parallel/pipeline_executor.h"
#include "trainer/config/gpu_table.h"
#include "trainer/cost/flops.h"
#include "trainer/data/dataset.h"
#include "trainer/errors.h"
#include "trainer/model/model.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/train/agreement.h"
#include "trainer/train/checkpointing.h"
#include "trainer/train/device_groups.h"
#include "trainer/train/device_selection.h"
#include "trainer/train/expert_balance.h"
#include "trainer/train/fault_injection.h"
#include "trainer/train/numerical_guard.h"
#include "trainer/train/param_dump.h"
#include "trainer/train/pipeline_plan.h"
#include "trainer/train/precision_report.h"
#include "trainer/train/progress.h"
#include "trainer/train/run_dir.h"
#include "trainer/train/run_ledger.h"
#include "trainer/train/stage_work.h"
#include "trainer/train/stop_signals.h"

namespace baleine::train {

namespace {

using Clock = std::chrono::steady_clock;
using parallel::DType;
using cost::Segment;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Sampler streams: training and validation draw independent windows.
constexpr uint64_t kTrainStream = 0;
constexpr uint64_t kValStream = 1;

// Mean validation loss over a fixed set of windows (the same every time, so the curve is
// comparable across the run), run through the pipeline as forward-only micro-batches. Every
// data-parallel replica evaluates all of them: with expert parallelism each forward is
// collective, and identical inputs make every rank's answer the single-process one.
double validation_loss(ModelStageWork& work, parallel::PipelineExecutor& evaluator,
                       const data::BatchSampler& sampler, const config::TrainSection& t,
                       const parallel::ProcessGroups& g) {
  work.begin_evaluation([&](int b, int32_t* inputs, int32_t* targets) {
    sampler.fill(0, b * t.micro_batch, t.micro_batch, inputs, targets);
  });
  evaluator.run(work);
  double sum = work.loss_sum();  // on the rank holding the head; 0 elsewhere
  g.pp->allreduce_sum(&sum, 1, DType::kFloat64);
  return sum / static_cast<double>(t.eval_batches);
}

// Rank 0 alone writes the run directory; every rank learns whether that worked, so that a
// failure there ends the job on all ranks instead of leaving them waiting in a collective.
std::unique_ptr<RunDir> open_run_dir(const config::RunConfig& c, parallel::ProcessGroups& g) {
  std::unique_ptr<RunDir> dir;
  run_agreed(*g.world, [&] {
    if (g.is_root()) dir = std::make_unique<RunDir>(c);
  });
  return dir;
}

void print_start_banner(const config::RunConfig& c, const parallel::ProcessGroups& g,
                        const model::ParameterCounts& counts, const optim::AdamW& optimizer,
                        const data::TokenDataset& train, const data::TokenDataset* val,
                        const DeviceFacts& devices, const SelectedBackend& backend,
                        const BufferGroups& buffers, const std::string& run_dir,
                        std::ostream& out) {
  out << g.topology.describe();
  const int usable = omp_get_num_procs();  // cores this process may run on (its affinity)
  const auto online = static_cast<int>(std::thread::hardware_concurrency());
  if (backend.gpu >= 0) {
    out << "device: " << backend.description << " on rank 0 (each rank drives the GPU of its "
        << "local rank); gradients cross ranks over " << buffers.kind << "\n";
  } else if (backend.backend->name != "cpu") {
    out << "device: " << backend.description << " (gradients cross ranks over "
        << buffers.kind << ")\n";
  } else {
    out << "device: cpu, " << omp_get_max_threads() << " OpenMP thread(s) per rank (" << usable
        << " of " << online << " cores usable by rank 0, " << g.process.local_size
        << " rank(s) on this node)\n";
  }
  const int gpus = devices.gpus;
  if (gpus > 0 && backend.gpu < 0) {
    out << "note: " << gpus << " GPU(s) on this node (rank 0 maps to GPU "
        << parallel::gpu_for_local_rank(g.process.local_rank, gpus)
        << " by local rank); this run has device: cpu (device: cuda trains on them)\n";
  }
  if (backend.gpu < 0 && usable * g.process.local_size < online) {
    // mpirun binds each rank to one core by default when it starts 2 or fewer ranks.
    out << "note: the ranks of this node can use only " << usable * g.process.local_size
        << " of its " << online << " cores; the launcher is binding them (Open MPI: add "
        << "--bind-to none, or --map-by slot:PE=" << std::max(1, online / g.process.local_size)
        << ")\n";
  }
  out << "model: " << format_count(static_cast<double>(counts.total)) << " parameters ("
      << format_count(static_cast<double>(counts.active)) << " active per token; "
      << format_count(static_cast<double>(counts.on_this_rank)) << " on rank 0), "
      << c.model.layers << " layers (" << c.model.dense_layers << " dense, "
      << c.model.layers - c.model.dense_layers << " MoE with " << c.model.moe.routed_experts
      << " routed top-" << c.model.moe.top_k << " + " << c.model.moe.shared_experts
      << " shared)\n";
  out << "optimizer: AdamW, " << optim::moment_precision_name(optimizer.moments())
      << " moments: " << format_count(static_cast<double>(optimizer.state_bytes()))
      << "B per rank" << (optimizer.sharded() ? " (ZeRO-1: sharded over data parallelism)" : "")
      << "\n";
  out << "data: train " << format_count(static_cast<double>(train.size())) << " tokens in "
      << train.shards().size() << " shard(s)";
  if (val) out << ", val " << format_count(static_cast<double>(val->size())) << " tokens";
  out << "\n";
  const int64_t tokens_per_step = c.train.global_batch * c.train.seq_len;
  out << "batch: " << c.train.global_batch << " sequences x " << c.train.seq_len << " tokens = "
      << tokens_per_step << " tokens/step (micro-batch " << c.train.micro_batch << " x "
      << c.grad_accum_steps() << " accumulation steps x " << c.parallel.dp << " dp ranks)\n";
  out << "run dir: " << run_dir << "\n" << std::flush;
}

// Which of this rank's MoE layers it reports: those of its direction-0 stages (DualPipe's
// direction-1 copies are mirrors of layers another rank reports).
std::vector<bool> reported_moe_layers(model::Model<float>& model, const PipelinePlan& pipeline) {
  std::vector<bool> reported;
  for (const int64_t layer : model.moe_layer_indices()) {
    bool mine = false;
    for (size_t i = 0; i < pipeline.parts.size(); ++i) {
      const auto& part = pipeline.parts[i];
      if (layer >= part.first_layer && layer < part.first_layer + part.layers) {
        mine = pipeline.part_directions[i] == 0;
      }
    }
    reported.push_back(mine);
  }
  return reported;
}

// The step's cost figures for the progress line and metrics.jsonl: MFU over the progress
// window's throughput, and device-hours and dollars of the whole run dir so far.
void add_cost(StepRecord& r, const RunLedger& ledger, const cost::FlopsPerToken& flops,
              int world, bool fp8) {
  const cost::DeviceRates& rates = ledger.rates();
  const double achieved = r.tokens_per_s * flops.total / world;  // FLOP/s per device
  r.has_cost = true;
  r.device_label = rates.kind == "cpu" ? "CPU" : "GPU";
  r.mfu_bf16 = rates.peak_bf16_tflops > 0 ? achieved / (rates.peak_bf16_tflops * 1e12) : 0;
  r.mfu_fp8 = fp8 && rates.peak_fp8_tflops > 0 ? achieved / (rates.peak_fp8_tflops * 1e12) : 0;
  r.device_hours = ledger.device_hours_so_far();
  r.usd = r.device_hours * rates.usd_per_hour;
  r.projected_usd = ledger.projected_device_hours(r.step, r.total_steps) * rates.usd_per_hour;
}

// A GPU run whose config does not name cost.gpu is costed on the row of rank 0's GPU, so that
// MFU and dollars mean something from the first step (the resolved config records it).
config::RunConfig costed_on_this_gpu(const config::RunConfig& given,
                                     const SelectedBackend& backend) {
  config::RunConfig c = given;
  if (backend.gpu < 0 || given.origins.count("cost.gpu")) return c;
  const std::string row = config::device_row_for_gpu_name(backend.gpu_name);
  if (row.empty()) return c;
  c.cost.gpu = row;
  c.origins["cost.gpu"] = "the GPU's name (" + backend.gpu_name + ")";
  return c;
}

// "resumed from …/step-000040: step 40, 10.2k tokens (written by 4 ranks as pp 2 x dp 2 x ep 2,
// 1f1b; this run: 1 rank: resharded)".
std::string describe_resume(const ckpt::Manifest& m, const std::string& dir,
                            const config::RunConfig& c, int world) {
  const auto& l = m.layout;
  const bool same = l.world == world && l.pp == c.parallel.pp && l.dp == c.parallel.dp &&
                    l.ep == c.parallel.ep && l.schedule == c.parallel.schedule &&
                    l.zero == (c.parallel.zero == 1);
  std::string text = "resumed from " + dir + ": step " + std::to_string(m.step) + ", " +
                     format_count(static_cast<double>(m.tokens)) + " tokens (written by " +
                     std::to_string(l.world) + " rank(s) as pp " + std::to_string(l.pp) +
                     " x dp " + std::to_string(l.dp) + " x ep " + std::to_string(l.ep) + ", " +
                     l.schedule + (l.zero ? ", ZeRO-1" : "") + "; ";
  text += same ? "same layout: the run continues exactly as if uninterrupted)"
               : "this run: " + std::to_string(world) + " rank(s): resharded)";
  if (m.next_batch != m.step + 1) {
    text += "; data resumes at batch " + std::to_string(m.next_batch);
  }
  if (m.precision != c.precision.compute) {
    text += "\nnote: the checkpoint trained with precision.compute " + m.precision + "; this run " +
            "uses " + c.precision.compute;
  }
  return text + "\n";
}

}  // namespace

TrainSummary train(const config::RunConfig& given, parallel::ProcessGroups& g,
                   const TrainOptions& options, std::ostream& out) {
  const auto start = Clock::now();
  const DeviceFacts devices = this_process_devices(g.process);
  run_agreed(*g.world, [&] { require_device(given, devices); });
  SelectedBackend backend;
  if (options.backend) {
    backend.backend = options.backend;
    backend.description = options.backend->name;
  } else {
    run_agreed(*g.world, [&] { backend = select_backend(given, g.process); });
  }
  const config::RunConfig c = costed_on_this_gpu(given, backend);
  // Every buffer the run allocates from here on (model, optimizer) lives in its memory.
  model::BackendScope on_backend(*backend.backend);
  const BufferGroups buffers = make_buffer_groups(c, g, *backend.backend, backend.gpu);
  const auto& t = c.train;
  const int64_t min_tokens = t.seq_len + 1;
  const auto train_data = data::TokenDataset::open(c.data.train, "data.train", c.where("data.train"),
                                                   c.model.vocab_size, min_tokens);
  std::unique_ptr<data::TokenDataset> val_data;
  if (!c.data.val.empty()) {
    val_data = std::make_unique<data::TokenDataset>(data::TokenDataset::open(
        c.data.val, "data.val", c.where("data.val"), c.model.vocab_size, min_tokens));
  }
  auto run_dir = open_run_dir(c, g);
  const data::BatchSampler train_sampler(train_data, t.seq_len, c.run.seed, kTrainStream);
  std::unique_ptr<data::BatchSampler> val_sampler;
  if (val_data) {
    val_sampler = std::make_unique<data::BatchSampler>(*val_data, t.seq_len, c.run.seed, kValStream);
  }

  const auto& placement = g.placement();
  const bool expert_parallel = g.topology.ep() > 1;
  const PipelinePlan pipeline = plan_pipeline(c, placement.stage);
  const model::PrecisionPlan precision = model::plan_precision(c.precision);
  model::Model<float> model(c.model, c.run.seed,
                            {expert_parallel ? g.ep.get() : nullptr, placement.expert_begin},
                            pipeline.parts, precision);
  optim::DataParallelGroups data_parallel{g.dp.get(), g.ep.get(), g.expert_dp.get(),
                                          c.parallel.bucket_mb, g.pp.get(), g.mirror.get()};
  buffers.attach(data_parallel);
  optim::AdamW optimizer(c.train.adamw, t.grad_clip, model.parameters(), data_parallel,
                         c.parallel.zero == 1, optim::moment_precision(c.precision));
  if (run_dir) {
    print_start_banner(c, g, model.count_parameters(), optimizer, train_data, val_data.get(),
                       devices, backend, buffers, run_dir->path(), out);
    out << describe_precision(c, precision);
    if (c.parallel.pp > 1) out << describe_pipeline(c, pipeline) << std::flush;
    for (const auto& kept : run_dir->kept_previous()) {
      out << "note: an earlier run's file in this run dir was kept as " << kept << "\n";
    }
  }
  // Resume: the run dir's newest complete checkpoint (or --resume-from), on any layout. Before
  // the ledger starts this restart, so that a refused checkpoint leaves no trace there (the
  // loading time counts as startup).
  Checkpointer checkpointer(c, g, pipeline, model, optimizer);
  NumericalGuard guard(c.guard);
  TrainingPosition at;  // where training stands: steps completed, tokens, next batch
  TrainSummary summary;
  std::string resume_dir;
  run_agreed(*g.world, [&] { resume_dir = checkpointer.choose(options.resume_from); });
  if (!resume_dir.empty()) {
    const ckpt::Manifest m = checkpointer.load(resume_dir);
    at = {m.step, m.tokens, m.next_batch};
    guard.restore(m.guard);
    summary.resumed_from_step = m.step;
    if (run_dir) {
      run_dir->carry_over(m.step);
      out << describe_resume(m, resume_dir, c, g.world->size()) << std::flush;
    }
  }
  const cost::FlopsPerToken flops = cost::flops_per_token(c.model, t.seq_len);
  RunLedger ledger(c, g, run_dir.get(), flops, out);
  if (run_dir) {
    const cost::DeviceRates& rates = ledger.rates();
    out << "cost: " << g.world->size() << " x " << rates.gpu << " (BF16 peak "
        << rates.peak_bf16_tflops << " TFLOP/s per device: " << rates.peak_formula << ") at $"
        << c.cost.usd_per_gpu_hour << " per device-hour, " << c.cost.phase << "; restart "
        << ledger.restart() << " of this run dir\n"
        << "FLOPs per token: " << flops.formula << "\n"
        << "ledger: " << run_dir->file("ledger.jsonl") << " (flushed every "
        << c.ledger.flush_every_s << " s)\n" << std::flush;
    if (backend.gpu >= 0 && rates.kind == "cpu") {
      out << "note: " << backend.gpu_name << " has no row in the device table, so MFU and $ "
          << "use cost.gpu " << c.cost.gpu << "; set cost.gpu (and cost.peak_tflops) for it\n";
    }
  }
  auto fault = FaultInjection::from_environment(g.rank());
  install_stop_signal_handlers();
  // The ledger's segment totals when the newest checkpoint was saved or loaded: a rollback
  // turns this rank's time since then into lost work.
  cost::SegmentSeconds clock_at_checkpoint = ledger.clock().totals();
  int64_t last_saved = resume_dir.empty() ? -1 : at.step;

  const int64_t accum = c.grad_accum_steps();
  const model::BatchShape shape{t.micro_batch, t.seq_len};
  const float loss_scale = 1.0f / static_cast<float>(accum);
  const int64_t tokens_per_step = t.global_batch * t.seq_len;
  // This rank's slice of every global batch: rows [first_row, first_row + accum·micro_batch).
  const int64_t first_row = placement.dp_rank * accum * t.micro_batch;
  parallel::PipelineExecutor executor(pipeline.schedule, g.pp.get());
  parallel::PipelineExecutor evaluator(
      parallel::forward_only_schedule(pipeline.schedule, static_cast<int>(t.eval_batches)),
      g.pp.get());
  ModelStageWork work(model, shape);
  int64_t step = 0;
  // The sampler's batch index runs ahead of the step after a rollback skipped batches.
  int64_t batch_offset = at.next_batch - (at.step + 1);
  work.on_first_forward([&] { fault.maybe_fail(step); });
  const auto moe_layers = model.moe_layers();
  const std::vector<bool> reported = reported_moe_layers(model, pipeline);
  std::vector<int64_t> dispatch_rows(static_cast<size_t>(g.world->size()));
  std::vector<double> timings(2 * static_cast<size_t>(g.world->size()));

  const auto loop_start = Clock::now();
  auto window_start = loop_start;
  int64_t window_tokens = 0;
  double window_eval_seconds = 0;  // validation and checkpoint time is not training throughput

  // Collective: a checkpoint of the state after `done` steps, then its ledger record.
  const auto save = [&](int64_t done, int64_t tokens, int64_t next_batch) {
    ledger.clock().switch_to(Segment::kCheckpoint);
    const auto save_start = Clock::now();
    fault.before_checkpoint(done);
    const std::string path =
        checkpointer.save({done, tokens, next_batch}, guard.state(), ledger.position());
    fault.after_checkpoint(done);
    ledger.checkpoint(done, tokens);
    clock_at_checkpoint = ledger.clock().totals();
    last_saved = done;
    const double seconds = seconds_since(save_start);
    window_eval_seconds += seconds;
    out << "checkpoint: " << path << " (" << static_cast<int64_t>(seconds * 1000) << " ms)\n"
        << std::flush;
    ledger.clock().switch_to(Segment::kIdle);
  };

  const int64_t first_step = at.step + 1;
  if (first_step > t.steps && run_dir) {
    out << "nothing to train: the checkpoint is at step " << at.step << " and train.steps is "
        << t.steps << " (raise train.steps to train further)\n";
  }
  for (step = first_step; step <= t.steps; ++step) {
    const auto step_start = Clock::now();
    ledger.clock().switch_to(Segment::kCompute);
    const double collectives_at_start = parallel::collective_seconds();
    const double lr = optim::learning_rate(t.lr, step, t.steps);
    model.parameters().zero_grads();
    work.begin_training(
        [&](int micro, int32_t* inputs, int32_t* targets) {
          train_sampler.fill(step + batch_offset, first_row + micro * t.micro_batch,
                             t.micro_batch, inputs, targets);
        },
        loss_scale);
    const parallel::PipelineTiming timing = executor.run(work);
    ledger.clock().move(Segment::kCompute, Segment::kBubble, timing.bubble_s());
    // The step's losses over the global batch. Each micro-batch's cross-entropy goes to its own
    // slot (global index dp_rank·accum + micro; the other slots stay 0, so the all-reduces add
    // only exact zeros), and every rank sums the slots in index order: the order of one
    // process, whatever the layout. The balance loss (one term per MoE stage) is summed as is.
    const int64_t micro_batches = accum * c.parallel.dp;
    std::vector<double> losses(static_cast<size_t>(micro_batches) + 1, 0.0);
    const auto& mine = work.micro_batch_losses();
    std::copy(mine.begin(), mine.end(), losses.begin() + placement.dp_rank * accum);
    losses.back() = work.aux_loss_sum() / static_cast<double>(accum);
    g.pp->allreduce_sum(losses.data(), micro_batches + 1, DType::kFloat64);
    g.dp->allreduce_sum(losses.data(), micro_batches + 1, DType::kFloat64);
    double loss = 0;
    for (int64_t i = 0; i < micro_batches; ++i) loss += losses[static_cast<size_t>(i)];
    loss /= static_cast<double>(micro_batches);
    if (fault.poisons_gradients(step)) {
      auto& grads = model.parameters().grads();
      const float nan = std::numeric_limits<float>::quiet_NaN();
      grads.memory().from_host(grads.data(), &nan, sizeof nan);
    }
    // The guard judges the step before its update: loss and norm are the same on every rank
    // (all-reduced), so every rank reaches the same verdict.
    const auto stats = optimizer.measure(model.parameters());
    const GuardVerdict verdict = guard.check(loss, stats.grad_norm);
    const bool applied = verdict.action == GuardVerdict::Action::kApply;
    if (applied) optimizer.apply(model.parameters(), lr, step, stats);

    StepRecord r;
    r.step = step;
    r.total_steps = t.steps;
    r.loss = loss;
    r.aux_loss = losses.back() / static_cast<double>(c.parallel.dp);
    r.lr = lr;
    r.grad_norm = stats.grad_norm;
    r.skipped = !applied;
    r.skip_reason = verdict.reason;
    r.has_moe = c.model.layers > c.model.dense_layers;
    int64_t rows_received = 0;
    // What this step kept for its backward and put on the EP wire, summed over all ranks.
    const model::ActivationBytes saved = model.take_activation_bytes();
    int64_t bytes[4] = {saved.linear_inputs, saved.other, 0, 0};
    for (auto* moe : moe_layers) {
      rows_received += moe->rows_received();
      bytes[2] += moe->dispatch_bytes();
      bytes[3] += moe->combine_bytes();
    }
    g.world->allreduce_sum(bytes, 4, DType::kInt64);
    r.activation_cache_bytes = bytes[0];
    r.other_activation_bytes = bytes[1];
    r.dispatch_bytes = bytes[2];
    r.combine_bytes = bytes[3];
    if (r.has_moe) {
      // Balancing sees the whole global batch, so replicated biases move identically.
      // A skipped step leaves the biases too (speed 0 still resets the load counters).
      const auto balance =
          balance_experts(model, g, reported, applied ? c.model.moe.bias_update_speed : 0.0);
      r.expert_imbalance = balance.max_imbalance;
      for (const auto& layer : balance.layers) r.expert_load.push_back(layer.load);
      if (run_dir) run_dir->expert_load().append(format_expert_load_json(step, balance.layers));
    }
    if (expert_parallel) {
      g.world->allgather(&rows_received, dispatch_rows.data(), 1, DType::kInt64);
      r.dispatch_rows_per_rank = dispatch_rows;
    }
    if (c.parallel.pp > 1) {
      // Each rank's time in its stages' compute and waiting (the bubble), for every rank.
      const double mine[2] = {timing.busy_s, timing.bubble_s()};
      g.world->allgather(mine, timings.data(), 2, DType::kFloat64);
      for (size_t i = 0; i < timings.size(); i += 2) {
        r.pipeline_busy_s.push_back(timings[i]);
        r.pipeline_bubble_s.push_back(timings[i + 1]);
      }
    }

    // Time inside collectives was communication the step waited for (on CPU ranks none of
    // it overlaps compute).
    ledger.clock().move(Segment::kCompute, Segment::kCommunication,
                        parallel::collective_seconds() - collectives_at_start);
    const bool last = step == t.steps;
    if (val_sampler && (last || (t.eval_every > 0 && step % t.eval_every == 0))) {
      ledger.clock().switch_to(Segment::kEvaluation);
      const auto eval_start = Clock::now();
      r.has_val_loss = true;
      r.val_loss = validation_loss(work, evaluator, *val_sampler, t, g);
      window_eval_seconds += seconds_since(eval_start);
      summary.has_val_loss = true;
      summary.last_val_loss = r.val_loss;
    }
    ledger.clock().switch_to(Segment::kIdle);
    r.step_seconds = seconds_since(step_start);
    r.tokens = step * tokens_per_step;
    window_tokens += tokens_per_step;
    r.elapsed_s = seconds_since(start);
    r.eta_s = seconds_since(loop_start) / static_cast<double>(step) *
              static_cast<double>(t.steps - step);
    r.tokens_per_s = static_cast<double>(window_tokens) /
                     std::max(1e-9, seconds_since(window_start) - window_eval_seconds);
    ledger.after_step(step, r.tokens);
    add_cost(r, ledger, flops, g.world->size(), c.precision.compute == "fp8");
    if (run_dir) run_dir->metrics().append(format_metrics_json(r));
    if (!applied && run_dir) {
      out << "warning: step " << step << " not applied: " << verdict.reason << "\n";
    }
    if (step == first_step || last || r.has_val_loss || step % c.log.every == 0) {
      out << format_progress_line(r) << "\n" << std::flush;
      window_start = Clock::now();
      window_tokens = 0;
      window_eval_seconds = 0;
    }
    if (step == first_step) {
      summary.first_loss = r.loss;
      summary.first_step_bytes = r;
    }
    summary.last_loss = r.loss;
    summary.steps = step;
    summary.tokens = r.tokens;

    bool diverged = false;
    if (verdict.action == GuardVerdict::Action::kRollback ||
        verdict.action == GuardVerdict::Action::kStop) {
      const std::string back =
          verdict.action == GuardVerdict::Action::kRollback ? checkpointer.choose("") : "";
      out << "numerical guard: " << c.guard.max_skips << " step(s) in a row not applied (last: "
          << verdict.reason << ")";
      if (!back.empty()) {
        // Back to the checkpoint, past the batches that led here (PaLM's recipe, §5.1).
        ledger.discard_work_since(clock_at_checkpoint);
        ledger.clock().switch_to(Segment::kCheckpoint);
        const ckpt::Manifest m = checkpointer.load(back);
        const int64_t next_batch = step + batch_offset + 1;
        out << "; rolling back to " << back << " (step " << m.step << ") and skipping batches "
            << m.next_batch << ".." << next_batch - 1 << "\n" << std::flush;
        guard.restore(m.guard);
        guard.rolled_back();
        batch_offset = next_batch - (m.step + 1);
        step = m.step;
        clock_at_checkpoint = ledger.clock().totals();
        continue;
      }
      out << (verdict.action == GuardVerdict::Action::kRollback
                  ? "; no checkpoint to roll back to"
                  : "; guard.max_rollbacks (" + std::to_string(c.guard.max_rollbacks) +
                        ") rollbacks already made")
          << ": stopping. The last applied weights are saved, with the data cursor past the "
             "bad batches; lower train.lr.peak or check the data before resuming\n";
      diverged = true;
    }
    // A stop signal on any rank stops every rank after this step.
    int64_t signal = stop_signal_received();
    std::vector<int64_t> signals(static_cast<size_t>(g.world->size()));
    g.world->allgather(&signal, signals.data(), 1, DType::kInt64);
    for (const int64_t s : signals) signal = signal ? signal : s;
    const bool periodic = c.checkpoint.every > 0 && step % c.checkpoint.every == 0;
    if ((last || periodic || signal || diverged) && last_saved != step) {
      save(step, r.tokens, step + batch_offset + 1);
    }
    if (signal || diverged) {
      ledger.finish(step, r.tokens, signal ? "stopped" : "failed");
      summary.exit_status = signal ? kExitStopped : kExitDiverged;
      if (signal) {
        out << "stopped by " << signal_name(static_cast<int>(signal)) << " after step " << step
            << ": the checkpoint above holds everything; rerun the same command to resume\n";
      }
      break;
    }
  }
  if (!options.save_params_dir.empty()) {
    save_params(options.save_params_dir, g.rank(), model.parameters());
  }
  if (summary.exit_status == 0) {
    ledger.finish(std::max(summary.steps, at.step), std::max(summary.tokens, at.tokens),
                  "completed");
  }
  summary.seconds = seconds_since(start);
  out << (summary.exit_status == 0 ? "done: " : "stopped: ");
  if (summary.steps >= first_step) {
    if (first_step == 1) {
      out << summary.steps << " steps";
    } else {
      out << "steps " << first_step << "-" << summary.steps << " (resumed after step " << at.step << ")";
    }
    out << ", " << format_count(static_cast<double>(summary.tokens)) << " tokens in "
        << format_duration(summary.seconds) << "; loss " << summary.first_loss << " -> "
        << summary.last_loss;
    if (summary.has_val_loss) out << ", val " << summary.last_val_loss;
    out << "\n" << format_memory_line(summary.first_step_bytes, c.precision.compute);
  } else {
    out << "no step trained";
  }
  if (run_dir) {
    out << "\ncost: " << format_cost_summary(ledger.device_hours_so_far(), ledger.rates())
        << "\nmetrics: " << run_dir->metrics().path() << "\nledger: "
        << run_dir->file("ledger.jsonl") << " (baleine report " << run_dir->path()
        << " writes the cost report)";
  }
  out << "\n";
  return summary;
}

}  // namespace baleine::train
