#include "trainer/config/validate.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "trainer/config/did_you_mean.h"
#include "trainer/config/gpu_table.h"
#include "trainer/config/value_text.h"
#include "trainer/errors.h"

namespace baleine::config {
namespace {

std::string text(int64_t value) { return value_text(value); }
std::string text(double value) { return value_text(value); }

// The rule helpers: each failure names the key, where it was set, the rule and the value.
class Rules {
 public:
  explicit Rules(const KeyOrigins& origins) : origins_(origins) {}

  [[noreturn]] void fail(const std::string& key, const std::string& message,
                         const std::string& hint = "") const {
    throw UserError(origins_.where(key), key, message, hint);
  }

  // The first of `keys` that the file or an override set, else the first: a cross-field error
  // points at a line the user wrote rather than at a default.
  std::string key_to_change(std::initializer_list<const char*> keys) const {
    for (const char* key : keys) {
      if (origins_.is_set(key)) return key;
    }
    return *keys.begin();
  }

  void at_least(const char* key, int64_t value, int64_t min, const std::string& hint = "") const {
    if (value < min) fail(key, "must be >= " + text(min) + ", got " + text(value), hint);
  }
  void positive(const char* key, double value) const {
    if (!(value > 0.0)) fail(key, "must be > 0, got " + text(value));
  }
  void non_negative(const char* key, double value) const {
    if (!(value >= 0.0)) fail(key, "must be >= 0, got " + text(value));
  }
  // [0, 1): Adam's moment decay rates (Kingma & Ba 2015); 1 would never forget the first step.
  void decay_rate(const char* key, double value) const {
    if (!(value >= 0.0 && value < 1.0)) fail(key, "must be in [0, 1), got " + text(value));
  }
  void one_of(const char* key, const std::string& value,
              const std::vector<std::string>& allowed) const {
    for (const std::string& a : allowed) {
      if (value == a) return;
    }
    const std::string close = closest_match(value, allowed);
    fail(key, "unknown value '" + value + "'",
         (close.empty() ? "" : "did you mean '" + close + "'? ") + "Choose one of: " +
             join(allowed));
  }

 private:
  const KeyOrigins& origins_;
};

// Hidden sizes near `hidden` that give every one of `heads` heads an even width.
std::string hidden_sizes_near(int64_t hidden, int64_t heads) {
  const int64_t step = 2 * heads;
  const int64_t below = hidden / step * step;
  return below > 0 ? text(below) + " or " + text(below + step) : text(below + step);
}

void check_run(const RunConfig& c, const Rules& rules) {
  rules.one_of("device", c.device, {"cpu", "cuda"});
  if (c.run.name.empty()) {
    rules.fail("run.name", "must not be empty", "name the run, e.g. `name: tiny-moe`");
  }
}

void check_model(const ModelSection& m, const Rules& rules) {
  rules.at_least("model.vocab_size", m.vocab_size, kByteTokens + 1,
                 "the byte tokenizer needs ids 0..255 for bytes plus " +
                     std::to_string(kEndOfTextToken) + " for end-of-text");
  rules.at_least("model.hidden", m.hidden, 1);
  rules.at_least("model.layers", m.layers, 1);
  rules.at_least("model.heads", m.heads, 1);
  rules.at_least("model.intermediate", m.intermediate, 1);
  rules.at_least("model.dense_layers", m.dense_layers, 0);
  if (m.dense_layers > m.layers) {
    rules.fail("model.dense_layers",
               "model.dense_layers (" + text(m.dense_layers) + ") must be <= model.layers (" +
                   text(m.layers) + ")",
               "the first dense_layers blocks are dense and the rest MoE; set "
               "model.dense_layers: " + text(m.layers) + " for an all-dense model");
  }
  rules.positive("model.rope_theta", m.rope_theta);
  rules.positive("model.norm_eps", m.norm_eps);
  rules.positive("model.init_std", m.init_std);

  if (m.hidden % m.heads != 0) {
    rules.fail(rules.key_to_change({"model.hidden", "model.heads"}),
               "model.hidden (" + text(m.hidden) + ") must be divisible by model.heads (" +
                   text(m.heads) + "): " + text(m.hidden) + " % " + text(m.heads) + " = " +
                   text(m.hidden % m.heads),
               "e.g. model.hidden: " + hidden_sizes_near(m.hidden, m.heads));
  }
  // RoPE rotates (even, odd) pairs of each head's dimensions (Su et al. 2021, RoFormer).
  if (m.head_dim() % 2 != 0) {
    rules.fail(rules.key_to_change({"model.heads", "model.hidden"}),
               "the head dimension model.hidden / model.heads = " + text(m.hidden) + " / " +
                   text(m.heads) + " = " + text(m.head_dim()) +
                   " is odd; RoPE rotates pairs of dimensions, so it must be even",
               "e.g. model.hidden: " + hidden_sizes_near(m.hidden, m.heads));
  }
}

void check_moe(const ModelSection& m, const Rules& rules) {
  const MoeSection& moe = m.moe;
  rules.at_least("model.moe.routed_experts", moe.routed_experts, 0);
  rules.at_least("model.moe.shared_experts", moe.shared_experts, 0);
  rules.one_of("model.moe.score", moe.score, {"sigmoid", "softmax"});
  rules.positive("model.moe.route_scale", moe.route_scale);
  rules.non_negative("model.moe.bias_update_speed", moe.bias_update_speed);
  rules.non_negative("model.moe.seq_aux_alpha", moe.seq_aux_alpha);

  const int64_t moe_layers = m.layers - m.dense_layers;
  if (moe_layers == 0) return;  // an all-dense model never routes
  const std::string layer_count = text(moe_layers) + " MoE layer(s) (model.layers - " +
                                  "model.dense_layers = " + text(m.layers) + " - " +
                                  text(m.dense_layers) + ")";
  if (moe.routed_experts < 1) {
    rules.fail("model.moe.routed_experts",
               "must be >= 1 for the " + layer_count + ", got " + text(moe.routed_experts),
               "or set model.dense_layers: " + text(m.layers) + " for an all-dense model");
  }
  if (moe.top_k < 1 || moe.top_k > moe.routed_experts) {
    rules.fail("model.moe.top_k",
               "must be in [1, model.moe.routed_experts] = [1, " + text(moe.routed_experts) +
                   "], got " + text(moe.top_k),
               "each token picks top_k of the routed experts");
  }
  rules.at_least("model.moe.intermediate", moe.intermediate, 1);

  rules.at_least("model.moe.expert_groups", moe.expert_groups, 1);
  if (moe.routed_experts % moe.expert_groups != 0) {
    rules.fail(rules.key_to_change({"model.moe.expert_groups", "model.moe.routed_experts"}),
               "model.moe.routed_experts (" + text(moe.routed_experts) +
                   ") must split into model.moe.expert_groups (" + text(moe.expert_groups) +
                   ") equal groups: " + text(moe.routed_experts) + " % " +
                   text(moe.expert_groups) + " = " + text(moe.routed_experts % moe.expert_groups),
               "a group is the experts of one node; choose a divisor of the expert count");
  }
  if (moe.max_groups_per_token < 0 || moe.max_groups_per_token > moe.expert_groups) {
    rules.fail("model.moe.max_groups_per_token",
               "must be in [0, model.moe.expert_groups] = [0, " + text(moe.expert_groups) +
                   "], got " + text(moe.max_groups_per_token),
               "0 turns node-limited routing off");
  }
  const int64_t reachable =
      moe.max_groups_per_token * (moe.routed_experts / moe.expert_groups);
  if (moe.max_groups_per_token > 0 && moe.top_k > reachable) {
    rules.fail(rules.key_to_change({"model.moe.max_groups_per_token", "model.moe.top_k"}),
               "model.moe.top_k (" + text(moe.top_k) + ") exceeds the experts a token can reach: "
               "max_groups_per_token x experts per group = " + text(moe.max_groups_per_token) +
                   " x " + text(moe.routed_experts / moe.expert_groups) + " = " + text(reachable),
               "raise model.moe.max_groups_per_token or lower model.moe.top_k");
  }
}

void check_data(const DataSection& d, const Rules& rules) {
  if (d.train.empty()) {
    rules.fail("data.train", "no training data: data.train is empty",
               "run `baleine data prepare ...` and set data.train to its output");
  }
}

void check_train(const TrainSection& t, const Rules& rules) {
  rules.at_least("train.steps", t.steps, 1);
  rules.at_least("train.micro_batch", t.micro_batch, 1);
  rules.at_least("train.global_batch", t.global_batch, 1);
  rules.at_least("train.seq_len", t.seq_len, 1);
  rules.non_negative("train.grad_clip", t.grad_clip);
  rules.at_least("train.eval_every", t.eval_every, 0, "0 evaluates only at the end");
  rules.at_least("train.eval_batches", t.eval_batches, 1);

  rules.positive("train.lr.peak", t.lr.peak);
  rules.non_negative("train.lr.min", t.lr.min);
  if (t.lr.min > t.lr.peak) {
    rules.fail("train.lr.min",
               "train.lr.min (" + text(t.lr.min) + ") must be <= train.lr.peak (" +
                   text(t.lr.peak) + ")",
               "the schedule decays from peak down to min");
  }
  rules.at_least("train.lr.warmup_steps", t.lr.warmup_steps, 0);
  if (t.lr.warmup_steps > t.steps) {
    rules.fail("train.lr.warmup_steps",
               "train.lr.warmup_steps (" + text(t.lr.warmup_steps) +
                   ") must be <= train.steps (" + text(t.steps) + ")");
  }
  rules.one_of("train.lr.schedule", t.lr.schedule, {"cosine", "constant"});

  rules.decay_rate("train.adamw.beta1", t.adamw.beta1);
  rules.decay_rate("train.adamw.beta2", t.adamw.beta2);
  rules.positive("train.adamw.eps", t.adamw.eps);
  rules.non_negative("train.adamw.weight_decay", t.adamw.weight_decay);
}

void check_parallel(const RunConfig& c, const Rules& rules) {
  const ParallelSection& p = c.parallel;
  rules.at_least("parallel.pp", p.pp, 1);
  rules.one_of("parallel.schedule", p.schedule, {"1f1b", "dualpipe", "dualpipev"});
  rules.at_least("parallel.dp", p.dp, 1);
  rules.at_least("parallel.ep", p.ep, 1);
  if (p.dp % p.ep != 0) {
    rules.fail(rules.key_to_change({"parallel.ep", "parallel.dp"}),
               "parallel.ep (" + text(p.ep) + ") must divide parallel.dp (" + text(p.dp) +
                   "): " + text(p.dp) + " % " + text(p.ep) + " = " + text(p.dp % p.ep),
               "expert-parallel groups are made of data-parallel ranks");
  }
  const bool has_moe = c.model.layers > c.model.dense_layers;
  if (has_moe && c.model.moe.routed_experts % p.ep != 0) {
    rules.fail(rules.key_to_change({"parallel.ep", "model.moe.routed_experts"}),
               "model.moe.routed_experts (" + text(c.model.moe.routed_experts) +
                   ") must be divisible by parallel.ep (" + text(p.ep) + "): " +
                   text(c.model.moe.routed_experts) + " % " + text(p.ep) + " = " +
                   text(c.model.moe.routed_experts % p.ep),
               "every expert-parallel rank holds the same number of experts");
  }
  if (p.zero != 0 && p.zero != 1) {
    rules.fail("parallel.zero", "must be 0 or 1, got " + text(p.zero),
               "ZeRO-1 shards the optimizer states; stages 2 and 3 are not implemented");
  }
  rules.positive("parallel.bucket_mb", p.bucket_mb);
  rules.positive("parallel.timeout_s", p.timeout_s);
  rules.at_least("parallel.ranks_per_node", p.ranks_per_node, 0, "0 takes the node size from MPI");
}

// Pipeline shape (after check_batch, so the micro-batch count is whole). DualPipe runs two
// pipelines, one from each end, over pp ranks; DualPipeV folds 2·pp stages into a V over pp
// ranks; both need enough micro-batches to fill their warm-up from both ends (DualPipe README).
void check_pipeline(const RunConfig& c, const Rules& rules) {
  const ParallelSection& p = c.parallel;
  if (p.pp == 1) return;
  const int64_t micro_batches = c.grad_accum_steps();
  const bool dual = p.schedule == "dualpipe" || p.schedule == "dualpipev";
  const int64_t stages = p.pipeline_stages();
  if (p.schedule == "dualpipe" && p.pp % 2 != 0) {
    rules.fail("parallel.pp", "DualPipe needs an even number of pipeline ranks, got " + text(p.pp),
               "use parallel.schedule: dualpipev for " + text(p.pp) + " ranks, or an even pp");
  }
  if (dual && micro_batches < 2 * p.pp) {
    rules.fail(rules.key_to_change({"train.global_batch", "train.micro_batch", "parallel.pp"}),
               p.schedule + " needs at least 2 x parallel.pp = " + text(2 * p.pp) +
                   " micro-batches per step, got global_batch / (micro_batch x dp) = " +
                   text(c.train.global_batch) + " / (" + text(c.train.micro_batch) + " x " +
                   text(p.dp) + ") = " + text(micro_batches),
               "raise train.global_batch or lower train.micro_batch");
  }
  if (c.model.layers < stages) {
    rules.fail(rules.key_to_change({"model.layers", "parallel.pp"}),
               "model.layers (" + text(c.model.layers) + ") must be >= the " + text(stages) +
                   " pipeline stages of " + p.schedule + " on " + text(p.pp) + " ranks",
               "every stage needs at least one transformer block");
  }
}

// The even split of parallel/stage_assignment.cpp (earlier stages take the remainder), quoted
// in hints as a list that passes. The config library cannot call it: parallel depends on config.
std::vector<int64_t> even_split(int64_t layers, int64_t stages) {
  std::vector<int64_t> counts;
  for (int64_t s = 0; s < stages; ++s) counts.push_back(layers / stages + (s < layers % stages));
  return counts;
}

// parallel.stage_layers, when given, replaces the even split: one block count per stage, each
// stage at least one block, every block on exactly one stage. Runs after check_pipeline, which
// reports too few blocks for the stages in terms of model.layers.
void check_stage_layers(const RunConfig& c, const Rules& rules) {
  const ParallelSection& p = c.parallel;
  const std::vector<int64_t>& counts = p.stage_layers;
  if (counts.empty()) return;
  const int64_t stages = p.pipeline_stages();
  const int64_t layers = c.model.layers;
  const std::string list = "parallel.stage_layers " + value_text(counts);
  const std::string even_example =
      layers >= stages ? "e.g. parallel.stage_layers: " + value_text(even_split(layers, stages)) +
                             " (the even split, which [] also gives)"
                       : "[] splits the blocks evenly";
  if (static_cast<int64_t>(counts.size()) != stages) {
    const std::string shape =
        p.schedule == "dualpipev" ? " (2 x parallel.pp: DualPipeV folds two stages per rank)"
        : p.schedule == "dualpipe" ? " in each direction"
                                   : "";
    rules.fail("parallel.stage_layers",
               list + " has " + text(static_cast<int64_t>(counts.size())) +
                   (counts.size() == 1 ? " entry" : " entries") + ", but " + p.schedule +
                   " on " + text(p.pp) + " rank(s) has " + text(stages) + " pipeline stage(s)" +
                   shape,
               "give one block count per stage; " + even_example);
  }
  int64_t sum = 0;
  bool overflow = false;  // absurd counts must still get a message, not undefined behaviour
  std::string terms;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] < 1) {
      rules.fail("parallel.stage_layers",
                 list + " gives stage " + text(static_cast<int64_t>(s)) + " " + text(counts[s]) +
                     " blocks; every stage needs at least one transformer block",
                 even_example);
    }
    overflow = overflow || __builtin_add_overflow(sum, counts[s], &sum);
    terms += (s ? " + " : "") + text(counts[s]);
  }
  if (overflow || sum != layers) {
    const std::string total = overflow ? "more than " + text(INT64_MAX) : text(sum);
    rules.fail("parallel.stage_layers",
               list + " sums to " + total + " but model.layers is " + text(layers) + ": " +
                   terms + " = " + total,
               "every block must sit on exactly one stage; " + even_example);
  }
}

// FP8 scaling granularity (DeepSeek-V3 report §3.3.2: one scale per 1x128 activation tile and
// per 128x128 weight block). A multiple of 16 keeps every tile whole 16-byte vectors of FP8
// codes; beyond 1024 values per scale, one outlier again costs its many neighbours their
// precision, which is what fine-grained scaling exists to prevent.
constexpr int64_t kFp8TileStep = 16;
constexpr int64_t kFp8TileMax = 1024;

void check_fp8_tile(int64_t tile, const Rules& rules) {
  const bool in_range = tile >= kFp8TileStep && tile <= kFp8TileMax;
  if (in_range && tile % kFp8TileStep == 0) return;
  rules.fail("precision.fp8.tile",
             "must be a multiple of " + text(kFp8TileStep) + " in [" + text(kFp8TileStep) +
                 ", " + text(kFp8TileMax) + "], got " + text(tile) +
                 (in_range ? ": " + text(tile) + " % " + text(kFp8TileStep) + " = " +
                                 text(tile % kFp8TileStep)
                           : std::string()),
             "e.g. precision.fp8.tile: 128, DeepSeek-V3's 1x128 activation tiles and 128x128 "
             "weight blocks (the only tile the GPU block-scaled GEMM supports)");
}

// Block indices in [0, model.layers), each once. A changed model.layers still points at the
// list: the list is what has to follow it.
void check_high_precision_blocks(const RunConfig& c, const Rules& rules) {
  const std::vector<int64_t>& blocks = c.precision.fp8.high_precision_blocks;
  const int64_t layers = c.model.layers;
  const char* key = "precision.fp8.high_precision_blocks";
  const std::string list = std::string(key) + " " + value_text(blocks);
  std::vector<int64_t> distinct;  // in the order given, for the hint
  bool repeats = false;
  int64_t repeated = 0;           // the first block listed a second time
  for (const int64_t block : blocks) {
    if (block < 0 || block >= layers) {
      rules.fail(key,
                 list + " names block " + text(block) + ", but the model has blocks 0 to " +
                     text(layers - 1) + " (model.layers = " + text(layers) + ")",
                 "blocks are numbered from 0: the last is model.layers - 1 = " +
                     text(layers - 1));
    }
    if (std::find(distinct.begin(), distinct.end(), block) == distinct.end()) {
      distinct.push_back(block);
    } else if (!repeats) {
      repeats = true;
      repeated = block;
    }
  }
  if (repeats) {
    rules.fail(key, list + " lists block " + text(repeated) + " more than once",
               "name each block once, e.g. " + std::string(key) + ": " + value_text(distinct));
  }
}

void check_precision(const RunConfig& c, const Rules& rules) {
  const PrecisionSection& p = c.precision;
  rules.one_of("precision.compute", p.compute, {"fp32", "bf16", "fp8"});
  rules.one_of("precision.optimizer_state", p.optimizer_state, {"fp32", "bf16"});
  // The fp8 keys are checked even when precision.compute is not fp8, and then left unused (as
  // model.moe.* is in an all-dense model): a config keeps its fp8 recipe while --set
  // precision.compute=bf16 runs the baseline, and a typo in it is reported now, not on the
  // day fp8 is turned on.
  rules.one_of("precision.fp8.format", p.fp8.format, {"e4m3", "e5m2", "hybrid"});
  check_fp8_tile(p.fp8.tile, rules);
  check_high_precision_blocks(c, rules);
}

// An optimizer step sums gradients over global_batch sequences: micro_batch per forward on
// each of dp ranks, repeated over a whole number of accumulation steps.
void check_batch(const RunConfig& c, const Rules& rules) {
  const int64_t per_pass = c.train.micro_batch * c.parallel.dp;
  if (c.train.global_batch % per_pass != 0) {
    const int64_t below = c.train.global_batch / per_pass * per_pass;
    rules.fail(rules.key_to_change({"train.global_batch", "train.micro_batch"}),
               "train.global_batch (" + text(c.train.global_batch) +
                   ") must be a multiple of train.micro_batch * parallel.dp = " +
                   text(c.train.micro_batch) + " * " + text(c.parallel.dp) + " = " +
                   text(per_pass) + ": " + text(c.train.global_batch) + " % " + text(per_pass) +
                   " = " + text(c.train.global_batch % per_pass),
               "e.g. train.global_batch: " +
                   (below > 0 ? text(below) + " or " : std::string()) + text(below + per_pass));
  }
}

std::string lowercase(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// The cost section (trainer/cost/) and the ledger: the device must be in the table (its peaks
// are what MFU and H800-equivalent hours divide by), prices, budgets and rates are never
// negative, the planning MFU is a fraction of the peak, and the ledger is flushed at some
// positive interval.
void check_cost(const RunConfig& c, const Rules& rules) {
  const CostSection& cost = c.cost;
  if (!find_device(cost.gpu)) {
    const std::vector<std::string> names = device_names();
    std::vector<std::string> lowered;  // the table is matched case-insensitively
    for (const std::string& name : names) lowered.push_back(lowercase(name));
    const std::string close = closest_match(lowercase(cost.gpu), lowered);
    std::string suggestion;
    for (size_t i = 0; i < names.size(); ++i) {
      if (!close.empty() && lowered[i] == close) suggestion = "did you mean '" + names[i] + "'? ";
    }
    rules.fail("cost.gpu", "unknown device '" + cost.gpu + "'",
               suggestion + "Choose one of: " + join(names) +
                   " (peaks from the vendors' datasheets: trainer/config/gpu_table.cpp); set "
                   "cost.peak_tflops for a device not listed");
  }
  rules.non_negative("cost.usd_per_gpu_hour", cost.usd_per_gpu_hour);
  rules.one_of("cost.phase", cost.phase, {"pretraining", "context_extension", "post_training"});
  rules.non_negative("cost.token_budget", cost.token_budget);
  rules.non_negative("cost.peak_tflops", cost.peak_tflops);
  rules.non_negative("cost.plan.gpu_hours_per_trillion_tokens",
                     cost.plan.gpu_hours_per_trillion_tokens);
  rules.non_negative("cost.plan.tokens_per_gpu_s", cost.plan.tokens_per_gpu_s);
  if (!(cost.plan.mfu > 0.0 && cost.plan.mfu <= 1.0)) {
    rules.fail("cost.plan.mfu", "must be in (0, 1], got " + text(cost.plan.mfu),
               "a fraction of the device's BF16 dense peak, e.g. cost.plan.mfu: 0.35");
  }
  rules.positive("ledger.flush_every_s", c.ledger.flush_every_s);
}

// Checkpoints and the numerical guard: intervals and counts are never negative, at least one
// checkpoint is kept, and a spike needs a few losses to be measured against.
void check_checkpoint_and_guard(const RunConfig& c, const Rules& rules) {
  rules.at_least("checkpoint.every", c.checkpoint.every, 0);
  rules.at_least("checkpoint.keep", c.checkpoint.keep, 1);
  rules.non_negative("guard.z_score", c.guard.z_score);
  rules.at_least("guard.window", c.guard.window, 2);
  rules.at_least("guard.max_skips", c.guard.max_skips, 1);
  rules.at_least("guard.max_rollbacks", c.guard.max_rollbacks, 0);
}

}  // namespace

void validate(const RunConfig& config, const KeyOrigins& origins) {
  const Rules rules(origins);
  check_run(config, rules);
  check_model(config.model, rules);
  check_moe(config.model, rules);
  check_data(config.data, rules);
  check_train(config.train, rules);
  check_parallel(config, rules);
  check_precision(config, rules);
  rules.at_least("log.every", config.log.every, 1);
  check_batch(config, rules);
  check_pipeline(config, rules);
  check_stage_layers(config, rules);
  check_cost(config, rules);
  check_checkpoint_and_guard(config, rules);
}

}  // namespace baleine::config
