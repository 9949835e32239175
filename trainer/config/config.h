#pragma once
// The one typed configuration tree of a run. Every section owns its defaults here; the loader
// (config/load.cpp) fills it from YAML + --set overrides and validates it; nothing else in
// baleine reads YAML. Key names in YAML are the member names below.
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace baleine::config {

// The byte-level tokenizer's ids: 0..255 are bytes, 256 separates documents.
constexpr int64_t kByteTokens = 256;
constexpr int32_t kEndOfTextToken = 256;

struct RunSection {
  std::string name = "baleine";
  std::string dir;     // default: runs/<name>
  uint64_t seed = 1234;
};

struct MoeSection {
  int64_t routed_experts = 8;
  int64_t shared_experts = 1;
  int64_t top_k = 2;
  int64_t intermediate = 128;        // width of each expert's SwiGLU
  std::string score = "sigmoid";     // sigmoid | softmax
  bool normalize = true;             // weights normalised over the chosen experts
  double route_scale = 1.0;
  double bias_update_speed = 0.001;  // γ of aux-loss-free balancing (DeepSeek-V3: 0.001)
  double seq_aux_alpha = 0.0;        // α of the sequence-wise balance loss (V3: 0.0001)
  // Node-limited routing (V3 §2.1.2: each token reaches at most M = 4 nodes). Experts are split
  // into expert_groups contiguous groups (a group = the experts of one node); each token picks
  // its top_k among the max_groups_per_token groups with the highest sums of their top-2
  // affinities. 0 = no limit.
  int64_t expert_groups = 1;
  int64_t max_groups_per_token = 0;
};

struct ModelSection {
  int64_t vocab_size = 257;          // 256 bytes + end-of-text
  int64_t hidden = 128;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t intermediate = 512;        // width of the dense SwiGLU MLPs
  int64_t dense_layers = 1;          // the first dense_layers blocks use a dense MLP, the rest MoE
  double rope_theta = 10000.0;
  double norm_eps = 1e-6;
  double init_std = 0.02;
  MoeSection moe;

  int64_t head_dim() const { return hidden / heads; }
  bool is_moe_layer(int64_t layer) const { return layer >= dense_layers; }
};

struct DataSection {
  std::string train;                 // file, directory or glob of token shards
  std::string val;                   // optional; empty = no validation
};

struct LrSection {
  double peak = 3e-3;
  double min = 3e-4;
  int64_t warmup_steps = 20;
  std::string schedule = "cosine";   // cosine | constant
};

struct AdamWSection {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;         // decoupled; applied to matrices only
};

struct TrainSection {
  int64_t steps = 100;
  int64_t micro_batch = 8;           // sequences per forward/backward
  int64_t global_batch = 8;          // sequences per optimizer step (all ranks)
  int64_t seq_len = 128;
  double grad_clip = 1.0;            // global L2 norm; 0 disables
  int64_t eval_every = 0;            // steps between validation passes; 0 = only at the end
  int64_t eval_batches = 4;          // micro-batches per validation pass
  LrSection lr;
  AdamWSection adamw;
};

struct ParallelSection {
  int64_t pp = 1;                    // pipeline ranks (training needs 1 until the executor lands)
  std::string schedule = "1f1b";     // 1f1b | dualpipe | dualpipev (see parallel/schedule.h)
  // Transformer blocks per pipeline stage, in stage order; empty = as even as possible (see
  // parallel/stage_assignment.h). An uneven split can unload the last stage, which also runs
  // the head and the loss over the whole vocabulary.
  std::vector<int64_t> stage_layers;
  int64_t dp = 1;                    // data-parallel ranks per stage; world = pp × dp
  int64_t ep = 1;                    // expert-parallel group size; divides dp
  int64_t zero = 0;                  // 1 = ZeRO-1: optimizer states sharded over dp
  double bucket_mb = 25.0;           // gradient all-reduce bucket size
  double timeout_s = 300.0;          // a collective that takes longer aborts the job
  int64_t ranks_per_node = 0;        // for the topology printout; 0 = as MPI reports

  // Pipeline stages per direction: DualPipeV folds 2·pp stages into a V over pp ranks; 1F1B
  // and DualPipe run one stage per rank (DualPipe's two directions each have pp stages).
  int64_t pipeline_stages() const { return schedule == "dualpipev" ? 2 * pp : pp; }
};

// FP8 options (used when precision.compute is fp8). DeepSeek-V3's recipe (report §3.3) is the
// default: E4M3 everywhere, 1×128 activation tiles, 128×128 weight blocks, online scales.
struct Fp8Section {
  std::string format = "e4m3";       // e4m3 | e5m2 | hybrid (E4M3 forward, E5M2 gradients)
  int64_t tile = 128;                // activations in 1×tile tiles, weights in tile×tile blocks
  bool power_of_two_scales = false;  // scales rounded up to powers of two (the EP dispatch
                                     // always uses them)
  std::vector<int64_t> high_precision_blocks;  // blocks whose Linears stay in BF16
};

struct PrecisionSection {
  // The Linears' GEMMs: fp32, bf16 (operands rounded to BF16, FP32 accumulation) or fp8.
  // Embedding, head, gating, norms and the attention core stay in FP32 whatever the choice.
  std::string compute = "fp32";
  std::string optimizer_state = "fp32";  // AdamW moments: fp32 | bf16 (master weights: FP32)
  Fp8Section fp8;
};

// What a device-hour costs and what the run is for (the GPU-hour ledger, `baleine plan` and
// `baleine report`; see trainer/cost/).
struct CostPlanSection {
  // Planning throughput for `baleine plan`: one of these (the first non-zero in this order),
  // else mfu's default. DeepSeek-V3 reports 180K H800 GPU-hours per trillion tokens (§1).
  double gpu_hours_per_trillion_tokens = 0;
  double tokens_per_gpu_s = 0;
  double mfu = 0.35;                 // of the device's BF16 dense peak
};

struct CostSection {
  std::string gpu = "cpu";           // a device of the table (trainer/config/gpu_table.h)
  double usd_per_gpu_hour = 2.0;     // DeepSeek-V3's assumed H800 rental price (§1)
  std::string phase = "pretraining";  // pretraining | context_extension | post_training
  double token_budget = 0;           // tokens the whole phase will train; 0 = this run's
                                     // train.steps x tokens per step
  double peak_tflops = 0;            // overrides the table's BF16 dense peak (0 = the table's)
  CostPlanSection plan;
};

struct LedgerSection {
  // RUN_DIR/ledger.jsonl is flushed and fsync'd at least this often (and at every checkpoint
  // and at the end), so a crash loses at most this much accounting.
  double flush_every_s = 30.0;
};

// Checkpoints in RUN_DIR/checkpoints/step-N (trainer/checkpoint/checkpoint_format.h).
struct CheckpointSection {
  int64_t every = 500;               // steps between checkpoints; 0 = only at the end (and on a
                                     // stop signal)
  int64_t keep = 3;                  // newest complete checkpoints kept; older ones are deleted
};

// The numerical guard (trainer/train/numerical_guard.h): a step whose loss or gradient norm is
// not finite, or whose loss is a spike, is not applied.
struct GuardSection {
  double z_score = 6.0;              // spike: loss > mean + z_score·std of the recent losses;
                                     // 0 disables the spike test (non-finite values still skip)
  int64_t window = 100;              // recent (applied) steps the mean and std are taken over
  int64_t max_skips = 5;             // skipped steps in a row before rolling back
  int64_t max_rollbacks = 2;         // rollbacks per process before the run stops
};

struct LogSection {
  int64_t every = 10;                // steps between progress lines
};

struct RunConfig {
  std::string source;                // the YAML file it came from
  std::string device = "cpu";        // cpu | cuda: where the math runs (train/device_selection.h)
  RunSection run;
  ModelSection model;
  DataSection data;
  TrainSection train;
  ParallelSection parallel;
  PrecisionSection precision;
  CostSection cost;
  LedgerSection ledger;
  CheckpointSection checkpoint;
  GuardSection guard;
  LogSection log;

  // Where each key was set: "file:line", "--set KEY=VALUE", or the file alone for a default.
  // For errors found after loading (a data path that matches nothing, a world-size mismatch).
  std::map<std::string, std::string> origins;
  std::string where(const std::string& key) const {
    const auto it = origins.find(key);
    return it == origins.end() ? source : it->second;
  }

  int64_t grad_accum_steps() const {
    return train.global_batch / (train.micro_batch * parallel.dp);
  }
};

// Loads `path`, applies overrides ("a.b.c=VALUE", YAML syntax for VALUE) and validates.
// Throws baleine::UserError naming file:line (or the --set argument) and the key path.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from YAML text; `display_name` stands in for the file name in messages (tests).
RunConfig load_config_from_string(const std::string& yaml_text, const std::string& display_name,
                                  const std::vector<std::string>& overrides = {});

// The resolved config as an aligned "key  value" table (printed on rank 0 at start).
void print_config_table(const RunConfig& config, std::ostream& out);
// The resolved config as YAML that load_config accepts and that reproduces the same config.
std::string config_to_yaml(const RunConfig& config);

}  // namespace baleine::config
