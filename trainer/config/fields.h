#pragma once
// The one list of every config key: its dotted YAML path and the member it fills. Reading,
// the unknown-key check, the table and the YAML writer all walk this list, so a new member
// added here is loaded, validated for type, printed and round-tripped with no other edit.
//
// Order matters only for output: the fields of one section (and of each nested section) must
// be contiguous, because config_to_yaml opens and closes YAML maps as the prefix changes.
#include "trainer/config/config.h"

namespace baleine::config {

// Calls visit(key_path, member) for every key. Config is RunConfig or const RunConfig. A member
// is int64_t, uint64_t, double, bool, std::string or std::vector<int64_t> (a list of integers):
// each type has its read_value (yaml_reader.h) and value_text (value_text.h) overload.
template <typename Config, typename Visitor>
void for_each_field(Config& c, Visitor&& visit) {
  visit("device", c.device);

  visit("run.name", c.run.name);
  visit("run.dir", c.run.dir);
  visit("run.seed", c.run.seed);

  visit("model.vocab_size", c.model.vocab_size);
  visit("model.hidden", c.model.hidden);
  visit("model.layers", c.model.layers);
  visit("model.heads", c.model.heads);
  visit("model.intermediate", c.model.intermediate);
  visit("model.dense_layers", c.model.dense_layers);
  visit("model.rope_theta", c.model.rope_theta);
  visit("model.norm_eps", c.model.norm_eps);
  visit("model.init_std", c.model.init_std);
  visit("model.moe.routed_experts", c.model.moe.routed_experts);
  visit("model.moe.shared_experts", c.model.moe.shared_experts);
  visit("model.moe.top_k", c.model.moe.top_k);
  visit("model.moe.intermediate", c.model.moe.intermediate);
  visit("model.moe.score", c.model.moe.score);
  visit("model.moe.normalize", c.model.moe.normalize);
  visit("model.moe.route_scale", c.model.moe.route_scale);
  visit("model.moe.bias_update_speed", c.model.moe.bias_update_speed);
  visit("model.moe.seq_aux_alpha", c.model.moe.seq_aux_alpha);
  visit("model.moe.expert_groups", c.model.moe.expert_groups);
  visit("model.moe.max_groups_per_token", c.model.moe.max_groups_per_token);

  visit("data.train", c.data.train);
  visit("data.val", c.data.val);

  visit("train.steps", c.train.steps);
  visit("train.micro_batch", c.train.micro_batch);
  visit("train.global_batch", c.train.global_batch);
  visit("train.seq_len", c.train.seq_len);
  visit("train.grad_clip", c.train.grad_clip);
  visit("train.eval_every", c.train.eval_every);
  visit("train.eval_batches", c.train.eval_batches);
  visit("train.lr.peak", c.train.lr.peak);
  visit("train.lr.min", c.train.lr.min);
  visit("train.lr.warmup_steps", c.train.lr.warmup_steps);
  visit("train.lr.schedule", c.train.lr.schedule);
  visit("train.adamw.beta1", c.train.adamw.beta1);
  visit("train.adamw.beta2", c.train.adamw.beta2);
  visit("train.adamw.eps", c.train.adamw.eps);
  visit("train.adamw.weight_decay", c.train.adamw.weight_decay);

  visit("parallel.pp", c.parallel.pp);
  visit("parallel.schedule", c.parallel.schedule);
  visit("parallel.stage_layers", c.parallel.stage_layers);
  visit("parallel.dp", c.parallel.dp);
  visit("parallel.ep", c.parallel.ep);
  visit("parallel.zero", c.parallel.zero);
  visit("parallel.bucket_mb", c.parallel.bucket_mb);
  visit("parallel.timeout_s", c.parallel.timeout_s);
  visit("parallel.ranks_per_node", c.parallel.ranks_per_node);

  visit("precision.compute", c.precision.compute);
  visit("precision.optimizer_state", c.precision.optimizer_state);
  visit("precision.fp8.format", c.precision.fp8.format);
  visit("precision.fp8.tile", c.precision.fp8.tile);
  visit("precision.fp8.power_of_two_scales", c.precision.fp8.power_of_two_scales);
  visit("precision.fp8.high_precision_blocks", c.precision.fp8.high_precision_blocks);

  visit("cost.gpu", c.cost.gpu);
  visit("cost.usd_per_gpu_hour", c.cost.usd_per_gpu_hour);
  visit("cost.phase", c.cost.phase);
  visit("cost.token_budget", c.cost.token_budget);
  visit("cost.peak_tflops", c.cost.peak_tflops);
  visit("cost.plan.gpu_hours_per_trillion_tokens", c.cost.plan.gpu_hours_per_trillion_tokens);
  visit("cost.plan.tokens_per_gpu_s", c.cost.plan.tokens_per_gpu_s);
  visit("cost.plan.mfu", c.cost.plan.mfu);

  visit("ledger.flush_every_s", c.ledger.flush_every_s);

  visit("checkpoint.every", c.checkpoint.every);
  visit("checkpoint.keep", c.checkpoint.keep);

  visit("guard.z_score", c.guard.z_score);
  visit("guard.window", c.guard.window);
  visit("guard.max_skips", c.guard.max_skips);
  visit("guard.max_rollbacks", c.guard.max_rollbacks);

  visit("log.every", c.log.every);
}

}  // namespace baleine::config
