#include "trainer/train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <ostream>
#include <vector>

#include "trainer/data/dataset.h"
#include "trainer/errors.h"
#include "trainer/model/model.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/train/progress.h"
#include "trainer/train/run_dir.h"

namespace baleine::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Sampler streams: training and validation draw independent windows.
constexpr uint64_t kTrainStream = 0;
constexpr uint64_t kValStream = 1;

struct Batch {
  std::vector<int32_t> inputs, targets;
  void resize(int64_t rows, int64_t seq) {
    inputs.resize(rows * seq);
    targets.resize(rows * seq);
  }
};

// Mean validation loss over a fixed set of windows (the same every time it is called, so the
// curve is comparable across the run).
double validation_loss(model::Model<float>& model, const data::BatchSampler& sampler,
                       const config::TrainSection& t, Batch& batch) {
  double sum = 0;
  const model::BatchShape shape{t.micro_batch, t.seq_len};
  for (int64_t b = 0; b < t.eval_batches; ++b) {
    sampler.fill(0, b * t.micro_batch, t.micro_batch, batch.inputs.data(), batch.targets.data());
    sum += model.evaluate(batch.inputs.data(), batch.targets.data(), shape);
  }
  return sum / static_cast<double>(t.eval_batches);
}

void print_start_banner(const config::RunConfig& c, const parallel::ProcessInfo& p,
                        const model::ParameterCounts& counts, const data::TokenDataset& train,
                        const data::TokenDataset* val, const std::string& run_dir,
                        std::ostream& out) {
  out << "topology: world " << p.world << " (pp " << c.parallel.pp << " x dp " << c.parallel.dp
      << ", ep " << c.parallel.ep << "), rank 0 on " << p.host << ", device cpu, "
      << omp_get_max_threads() << " OpenMP threads\n";
  out << "model: " << format_count(static_cast<double>(counts.total)) << " parameters ("
      << format_count(static_cast<double>(counts.active)) << " active per token), "
      << c.model.layers << " layers (" << c.model.dense_layers << " dense, "
      << c.model.layers - c.model.dense_layers << " MoE with " << c.model.moe.routed_experts
      << " routed top-" << c.model.moe.top_k << " + " << c.model.moe.shared_experts
      << " shared)\n";
  out << "data: train " << format_count(static_cast<double>(train.size())) << " tokens in "
      << train.shards().size() << " shard(s)";
  if (val) out << ", val " << format_count(static_cast<double>(val->size())) << " tokens";
  out << "\n";
  const int64_t tokens_per_step = c.train.global_batch * c.train.seq_len;
  out << "batch: " << c.train.global_batch << " sequences x " << c.train.seq_len << " tokens = "
      << tokens_per_step << " tokens/step (micro-batch " << c.train.micro_batch << ", "
      << c.grad_accum_steps() << " accumulation steps)\n";
  out << "run dir: " << run_dir << "\n" << std::flush;
}

}  // namespace

TrainSummary train(const config::RunConfig& c, const parallel::ProcessInfo& process,
                   std::ostream& out) {
  const auto start = Clock::now();
  const auto& t = c.train;
  const int64_t min_tokens = t.seq_len + 1;
  const auto train_data = data::TokenDataset::open(c.data.train, "data.train", c.where("data.train"),
                                                   c.model.vocab_size, min_tokens);
  std::unique_ptr<data::TokenDataset> val_data;
  if (!c.data.val.empty()) {
    val_data = std::make_unique<data::TokenDataset>(data::TokenDataset::open(
        c.data.val, "data.val", c.where("data.val"), c.model.vocab_size, min_tokens));
  }
  RunDir run_dir(c);
  const data::BatchSampler train_sampler(train_data, t.seq_len, c.run.seed, kTrainStream);
  std::unique_ptr<data::BatchSampler> val_sampler;
  if (val_data) {
    val_sampler = std::make_unique<data::BatchSampler>(*val_data, t.seq_len, c.run.seed, kValStream);
  }

  model::Model<float> model(c.model, c.run.seed);
  optim::AdamW optimizer(c.train.adamw, t.grad_clip, model.parameters());
  print_start_banner(c, process, model.count_parameters(), train_data, val_data.get(),
                     run_dir.path(), out);
  for (const auto& kept : run_dir.kept_previous()) {
    out << "note: an earlier run's file in this run dir was kept as " << kept << "\n";
  }

  const int64_t accum = c.grad_accum_steps();
  const model::BatchShape shape{t.micro_batch, t.seq_len};
  const float loss_scale = 1.0f / static_cast<float>(accum);
  const int64_t tokens_per_step = t.global_batch * t.seq_len;
  auto moe_layers = model.moe_layers();
  Batch batch;
  batch.resize(t.micro_batch, t.seq_len);

  TrainSummary summary;
  const auto loop_start = Clock::now();
  auto window_start = loop_start;
  int64_t window_tokens = 0;
  double window_eval_seconds = 0;  // validation time is not training throughput
  for (int64_t step = 1; step <= t.steps; ++step) {
    const auto step_start = Clock::now();
    const double lr = optim::learning_rate(t.lr, step, t.steps);
    model.parameters().zero_grads();
    double loss = 0, aux = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      train_sampler.fill(step, micro * t.micro_batch, t.micro_batch, batch.inputs.data(),
                         batch.targets.data());
      const auto result = model.forward(batch.inputs.data(), batch.targets.data(), shape);
      model.backward(loss_scale);
      loss += result.loss / static_cast<double>(accum);
      aux += result.aux_loss / static_cast<double>(accum);
    }
    const auto stats = optimizer.step(model.parameters(), lr, step);

    StepRecord r;
    r.step = step;
    r.total_steps = t.steps;
    r.loss = loss;
    r.aux_loss = aux;
    r.lr = lr;
    r.grad_norm = stats.grad_norm;
    r.has_moe = !moe_layers.empty();
    r.expert_imbalance = 0;
    std::vector<ExpertLoadRecord> routing;
    for (size_t i = 0; i < moe_layers.size(); ++i) {
      auto* moe = moe_layers[i];
      const double imbalance = moe->load_imbalance();
      r.expert_imbalance = std::max(r.expert_imbalance, imbalance);
      routing.push_back({c.model.dense_layers + static_cast<int64_t>(i), moe->load(), moe->bias(),
                         imbalance});
      moe->update_bias(c.model.moe.bias_update_speed);  // also resets the load counters
    }
    if (!routing.empty()) run_dir.expert_load().append(format_expert_load_json(step, routing));
    const bool last = step == t.steps;
    if (val_sampler && (last || (t.eval_every > 0 && step % t.eval_every == 0))) {
      const auto eval_start = Clock::now();
      r.has_val_loss = true;
      r.val_loss = validation_loss(model, *val_sampler, t, batch);
      window_eval_seconds += seconds_since(eval_start);
      summary.has_val_loss = true;
      summary.last_val_loss = r.val_loss;
    }
    r.step_seconds = seconds_since(step_start);
    r.tokens = step * tokens_per_step;
    window_tokens += tokens_per_step;
    r.elapsed_s = seconds_since(start);
    r.eta_s = seconds_since(loop_start) / static_cast<double>(step) *
              static_cast<double>(t.steps - step);
    r.tokens_per_s = static_cast<double>(window_tokens) /
                     std::max(1e-9, seconds_since(window_start) - window_eval_seconds);
    run_dir.metrics().append(format_metrics_json(r));
    if (step == 1 || last || r.has_val_loss || step % c.log.every == 0) {
      out << format_progress_line(r) << "\n" << std::flush;
      window_start = Clock::now();
      window_tokens = 0;
      window_eval_seconds = 0;
    }
    if (step == 1) summary.first_loss = loss;
    summary.last_loss = loss;
    summary.steps = step;
    summary.tokens = r.tokens;
  }
  summary.seconds = seconds_since(start);
  out << "done: " << summary.steps << " steps, " << format_count(static_cast<double>(summary.tokens))
      << " tokens in " << format_duration(summary.seconds) << "; loss " << summary.first_loss
      << " -> " << summary.last_loss;
  if (summary.has_val_loss) out << ", val " << summary.last_val_loss;
  out << "\nmetrics: " << run_dir.metrics().path() << "\n";
  return summary;
}

}  // namespace baleine::train
