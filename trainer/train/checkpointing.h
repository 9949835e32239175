#pragma once
// The trainer's side of checkpoints (format and files: trainer/checkpoint/): what each rank
// writes, in global coordinates, and how each rank finds its own parameters, AdamW moments and
// routing biases again, whatever layout wrote them.
//
// Who writes what (every element exactly once): a tensor of the direction-0 copy of a layer
// (DualPipe's mirrored copies are identical) by data-parallel rank 0 (replicated parameters) or
// expert-data-parallel rank 0 (routed experts); moments the same way, except under ZeRO-1,
// where every rank writes the shard it updates. A rank that holds nothing to write writes no
// shard.
#include <cstdint>
#include <string>

#include "parallel/process_groups.h"
#include "trainer/checkpoint/checkpoint_format.h"
#include "trainer/config/config.h"
#include "trainer/model/model.h"
#include "trainer/optim/adamw.h"
#include "trainer/train/pipeline_plan.h"

namespace baleine::train {

// Where training stands: steps completed, tokens trained, and the next batch the sampler draws.
struct TrainingPosition {
  int64_t step = 0;
  int64_t tokens = 0;
  int64_t next_batch = 1;
};

// Hash of the model section (every model.* key and its value): a checkpoint of another model is
// refused before any tensor is read.
std::string model_hash(const config::RunConfig& config);

class Checkpointer {
 public:
  Checkpointer(const config::RunConfig& config, parallel::ProcessGroups& groups,
               const PipelinePlan& pipeline, model::Model<float>& model, optim::AdamW& optimizer);

  // Collective: writes RUN_DIR/checkpoints/step-N (N = at.step) and prunes to checkpoint.keep.
  // Returns its path. Throws UserError on every rank when any rank fails (the previous
  // checkpoints are untouched).
  std::string save(const TrainingPosition& at, const ckpt::GuardState& guard,
                   const ckpt::LedgerPosition& ledger);

  // The checkpoint to start from: `requested` (--resume-from: a checkpoint directory) or the
  // newest complete one under RUN_DIR/checkpoints; "" for a fresh start. Throws UserError when
  // `requested` is not a complete checkpoint.
  std::string choose(const std::string& requested) const;

  // Collective: verifies the checkpoint (manifest, model, every shard's size and checksum,
  // split over the ranks) and loads this rank's parameters, moments and routing biases.
  // Throws UserError on every rank, naming the file and what is wrong, with the next older
  // complete checkpoint offered in the hint.
  ckpt::Manifest load(const std::string& checkpoint_dir);

 private:
  bool writes_tensor(const model::ParameterEntry& entry) const;
  bool in_direction_zero(const std::string& name) const;
  void write_shard(const std::string& temporary);
  void read_state(const std::string& checkpoint_dir, const ckpt::Manifest& manifest);
  std::string older_checkpoint_hint(const std::string& checkpoint_dir) const;

  const config::RunConfig& config_;
  parallel::ProcessGroups& groups_;
  const PipelinePlan& pipeline_;
  model::Model<float>& model_;
  optim::AdamW& optimizer_;
};

}  // namespace baleine::train
