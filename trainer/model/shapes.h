#pragma once
// The shape of one micro-batch as it flows through the layers.
#include <cstdint>

#include "parallel/comm.h"

namespace baleine::model {

// How this rank's copy of the model is cut: which routed experts it holds and the group that
// exchanges tokens with the ranks holding the others. The default is everything local.
struct ModelParallelism {
  parallel::Comm* ep_group = nullptr;
  int64_t expert_begin = 0;
};

struct BatchShape {
  int64_t batch = 0;  // sequences
  int64_t seq = 0;    // tokens per sequence
  int64_t tokens() const { return batch * seq; }
};

}  // namespace baleine::model
