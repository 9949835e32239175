#pragma once
// Which transformer blocks each pipeline stage runs. The embedding belongs to the first stage,
// the final norm, the head and the loss to the last (of each direction, for DualPipe). Blocks
// are split as evenly as possible; when they do not divide, the earlier stages take one more,
// since the last stage also carries the head and the loss over the whole vocabulary.
// (A per-stage list from the config, parallel.stage_layers, is still to come.)
#include <cstdint>
#include <string>
#include <vector>

namespace baleine::parallel {

struct StageLayers {
  int stage = 0;
  int64_t first_layer = 0;   // blocks [first_layer, first_layer + layers)
  int64_t layers = 0;
  bool has_embedding = false;
  bool has_head = false;     // final norm + head + loss
};

// Throws std::invalid_argument when layers < stages (the config loader reports it first).
std::vector<StageLayers> assign_layers(int64_t layers, int stages);

// "stage 0: embedding + blocks 0-1" lines; also checks that every block is covered exactly
// once (throws std::logic_error otherwise: an assignment bug, not a user error).
std::string describe_assignment(const std::vector<StageLayers>& stages, int64_t layers);

}  // namespace baleine::parallel
