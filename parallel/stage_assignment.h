#pragma once
// Which transformer blocks each pipeline stage runs. The embedding belongs to the first stage,
// the final norm, the head and the loss to the last (of each direction, for DualPipe). By
// default blocks are split as evenly as possible; when they do not divide, the earlier stages
// take one more, since the last stage also carries the head and the loss over the whole
// vocabulary. The config's parallel.stage_layers can instead give each stage's block count, for
// an uneven split (e.g. fewer blocks on the last stage when the vocabulary is large).
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

// Blocks 0..layers-1 over `stages` stages, in order. `stage_layers` empty: the even split;
// otherwise stage s runs stage_layers[s] blocks. Throws std::invalid_argument when the split is
// impossible (layers < stages; a list whose length is not `stages`, with an entry < 1, or whose
// sum is not `layers`): the config loader reports those first, with the user's line.
std::vector<StageLayers> assign_layers(int64_t layers, int stages,
                                       const std::vector<int64_t>& stage_layers = {});

// "stage 0: embedding + blocks 0-1" lines; also checks that every block is covered exactly
// once (throws std::logic_error otherwise: an assignment bug, not a user error).
std::string describe_assignment(const std::vector<StageLayers>& stages, int64_t layers);

}  // namespace baleine::parallel
