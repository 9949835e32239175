#pragma once
// What a step reports: the progress line on the terminal and the metrics.jsonl record.
#include <cstdint>
#include <string>
#include <vector>

namespace baleine::train {

struct StepRecord {
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0;              // mean training cross-entropy of the step (nats/token)
  bool has_val_loss = false;
  double val_loss = 0;
  double aux_loss = 0;          // sequence-wise balance loss (0 when disabled)
  double lr = 0;
  double grad_norm = 0;         // before clipping
  // The numerical guard (numerical_guard.h) did not apply this step's update, and why.
  bool skipped = false;
  std::string skip_reason;
  int64_t tokens = 0;           // trained so far
  double tokens_per_s = 0;      // over the steps since the last progress line
  double step_seconds = 0;
  double elapsed_s = 0;
  double eta_s = 0;
  bool has_moe = false;
  double expert_imbalance = 1;  // max over MoE layers of (max load / mean load) in this step
  std::vector<std::vector<int64_t>> expert_load;  // tokens per expert, per MoE layer, this step
  // Expert parallelism: rows each world rank's experts received in the step's all-to-alls
  // (all MoE layers and micro-batches); empty without EP.
  std::vector<int64_t> dispatch_rows_per_rank;
  // Pipeline parallelism: each world rank's seconds inside its stages' compute (busy) and the
  // rest of its step's pipeline (the bubble: waiting for activations and gradients); empty
  // without a pipeline.
  std::vector<double> pipeline_busy_s, pipeline_bubble_s;
  // Summed over all ranks and micro-batches of the step: what the forwards kept for the
  // backward (the Linears' saved inputs, and everything else), and the bytes put on the EP
  // wire by the forward dispatch and combine (model/expert_wire.h).
  int64_t activation_cache_bytes = 0, other_activation_bytes = 0;
  int64_t dispatch_bytes = 0, combine_bytes = 0;
  // Cost (trainer/train/run_ledger.h): MFU of the progress window against the device's BF16
  // peak (and FP8 peak under fp8 compute; 0 = not shown), device-hours and dollars of the run
  // dir so far (earlier restarts included) and projected for train.steps.
  bool has_cost = false;
  std::string device_label = "GPU";  // "GPU" or "CPU"
  double mfu_bf16 = 0, mfu_fp8 = 0;
  double device_hours = 0, usd = 0, projected_usd = 0;
};

// "step   10/200 | loss 3.2145 | val 3.1002 | lr 1.20e-03 | grad 0.85 | 12.3k tok/s |
//  MFU 1.2% bf16 | 0.0123 CPU-h | $0.0246 of ~$0.49 | 0:12 elapsed | eta 2:00"
std::string format_progress_line(const StepRecord& r);
// "memory per step: Linear activation cache 1.20 MB (fp8), other saved activations …"
std::string format_memory_line(const StepRecord& r, const std::string& compute);
// {"step":10,"loss":3.2145,...} on one line.
std::string format_metrics_json(const StepRecord& r);
// The step's routing, one object per MoE layer: {"step":N,"layers":[{"layer":L,
// "imbalance":x,"load":[tokens per expert],"bias":[selection bias]}, ...]}.
struct ExpertLoadRecord {
  int64_t layer = 0;
  std::vector<int64_t> load;
  std::vector<float> bias;
  double imbalance = 1;
};
std::string format_expert_load_json(int64_t step, const std::vector<ExpertLoadRecord>& layers);
// 75 → "1:15", 3725 → "1:02:05".
std::string format_duration(double seconds);
// 12345 → "12.3k", 1.2e6 → "1.20M".
std::string format_count(double value);

}  // namespace baleine::train
