#pragma once
// The end-of-step routing bookkeeping of DeepSeek-V3's aux-loss-free balancing (§2.1.2): the
// expert loads of the whole global batch decide each MoE layer's bias update, and the whole
// model's loads are reported by rank 0, whatever each rank holds.
#include <vector>

#include "parallel/process_groups.h"
#include "trainer/model/model.h"
#include "trainer/train/progress.h"

namespace baleine::train {

struct ExpertBalance {
  double max_imbalance = 1;                 // over every MoE layer of the model
  std::vector<ExpertLoadRecord> layers;     // every MoE layer of the model, in order
};

// Sums this step's loads over the data-parallel group (and DualPipe's mirror pair, whose two
// copies of a layer saw different micro-batches), so every copy of a layer moves its bias the
// same way; then gathers every layer's load, bias and imbalance over the pipeline group.
// reported[i]: whether this rank reports its i-th MoE layer (the copy of direction 0 does,
// so that DualPipe's mirrored layers are not counted twice). Updates the biases (speed) and
// resets the load counters.
ExpertBalance balance_experts(model::Model<float>& model, const parallel::ProcessGroups& groups,
                              const std::vector<bool>& reported, double speed);

}  // namespace baleine::train
