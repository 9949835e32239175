#pragma once
// Device memory per rank for a config's layout, by component, as baleine's trainer holds it
// (not as an ideal implementation would): FP32 master weights and gradients, AdamW's two
// moments (FP32 or BF16, ZeRO-1 sharded), and the activations each micro-batch keeps for its
// backward times the micro-batches the pipeline schedule holds at once. `baleine plan` prints
// it for the most loaded pipeline rank and warns when it exceeds the device's memory.
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/stage_assignment.h"
#include "trainer/config/config.h"

namespace baleine::cost {

// What one micro-batch's forward keeps for its backward on one pipeline stage, in bytes.
// linear_inputs and block_other count the same buffers as Model::take_activation_bytes()
// (trainer/model/activation_bytes.h) for the stage's blocks; stream and ends are what the
// model itself keeps around them.
struct ActivationEstimate {
  double linear_inputs = 0;    // the blocks' Linear inputs, in the Linears' formats (the FP8
                               // activation cache under fp8: codes + one FP32 scale per tile)
  double block_other = 0;      // the blocks' other saved state, in FP32 (the model's type)
  double attention_lse = 0;    // the part of block_other that is the attention log-sum-exps
                               // (one per query row and head: the probabilities themselves
                               // are recomputed in the backward, kernels/attention.h)
  double stream = 0;           // the residual stream: each block's input and the stage's output
  double ends = 0;             // token ids; with the head: final norm output, logits, targets
  double blocks() const { return linear_inputs + block_other; }
  double total() const { return linear_inputs + block_other + stream + ends; }
};

// One micro-batch of `micro_batch` sequences of `seq_len` tokens through `stage`. Routed rows
// are assumed spread evenly over the `ep` expert-parallel ranks (perfect balance: each rank's
// experts receive as many rows as the rank sends, tokens x top_k).
ActivationEstimate estimate_activations(const config::ModelSection& model,
                                        const config::PrecisionSection& precision,
                                        const parallel::StageLayers& stage, int64_t micro_batch,
                                        int64_t seq_len, int64_t ep);

struct StageParameters {
  int64_t replicated = 0;  // held by every data-parallel rank of the stage
  int64_t expert = 0;      // the routed experts this rank holds (1/ep of each MoE block's)
  int64_t total() const { return replicated + expert; }
};

// The parameters a rank holding `stage` allocates, as the model's ParameterStore lays them out.
StageParameters stage_parameters(const config::ModelSection& model,
                                 const parallel::StageLayers& stage, int64_t ep);

struct MemoryComponent {
  std::string name;       // "weights", "gradients", "optimizer", "ZeRO-1 staging", "activations"
  std::string precision;  // e.g. "FP32 master", "BF16 m and v"
  std::string detail;     // how it was counted
  double bytes = 0;
};

struct RankMemory {
  int rank = 0;                        // pipeline rank
  std::string holds;                   // e.g. "stage 0 (embedding, blocks 0-3) + ..."
  StageParameters parameters;          // over the stages it holds
  ActivationEstimate per_micro_batch;  // of its heaviest stage
  int peak_in_flight = 1;              // micro-batch activations held at once (the schedule's)
  std::vector<MemoryComponent> components;
  double total_bytes = 0;
};

struct MemoryPlan {
  std::vector<RankMemory> ranks;  // per pipeline rank (every data-parallel rank of a pipeline
                                  // rank holds the same)
  int most_loaded = 0;            // index into ranks
  const RankMemory& worst() const { return ranks[static_cast<size_t>(most_loaded)]; }
};

// Runs the pipeline schedule's simulator (parallel/schedule.h) for the peak micro-batches in
// flight; no model is built.
MemoryPlan plan_memory(const config::RunConfig& config);

}  // namespace baleine::cost
