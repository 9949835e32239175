#pragma once
// The shape of one micro-batch as it flows through the layers.
#include <cstdint>

namespace baleine::model {

struct BatchShape {
  int64_t batch = 0;  // sequences
  int64_t seq = 0;    // tokens per sequence
  int64_t tokens() const { return batch * seq; }
};

}  // namespace baleine::model
