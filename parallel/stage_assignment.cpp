#include "parallel/stage_assignment.h"

#include <stdexcept>

namespace baleine::parallel {

namespace {

std::string list_text(const std::vector<int64_t>& counts) {
  std::string text = "[";
  for (size_t i = 0; i < counts.size(); ++i) text += (i ? ", " : "") + std::to_string(counts[i]);
  return text + "]";
}

// The per-stage block counts: the given list after checking it, else the even split.
std::vector<int64_t> block_counts(int64_t layers, int stages,
                                  const std::vector<int64_t>& stage_layers) {
  if (stage_layers.empty()) {
    std::vector<int64_t> counts;
    for (int s = 0; s < stages; ++s) counts.push_back(layers / stages + (s < layers % stages));
    return counts;
  }
  const std::string what = "assign_layers: stage_layers " + list_text(stage_layers) + " ";
  if (stage_layers.size() != static_cast<size_t>(stages)) {
    throw std::invalid_argument(what + "has " + std::to_string(stage_layers.size()) +
                                " entries for " + std::to_string(stages) + " stages");
  }
  int64_t sum = 0;
  for (const int64_t count : stage_layers) {
    // count <= layers - sum also keeps the running sum from overflowing.
    if (count < 1 || count > layers - sum) {
      throw std::invalid_argument(what + "does not split " + std::to_string(layers) +
                                  " blocks into stages of at least one block each");
    }
    sum += count;
  }
  if (sum != layers) {
    throw std::invalid_argument(what + "sums to " + std::to_string(sum) + ", not " +
                                std::to_string(layers) + " blocks");
  }
  return stage_layers;
}

}  // namespace

std::vector<StageLayers> assign_layers(int64_t layers, int stages,
                                       const std::vector<int64_t>& stage_layers) {
  if (stages < 1 || layers < stages) {
    throw std::invalid_argument("assign_layers: " + std::to_string(layers) + " blocks cannot fill " +
                                std::to_string(stages) + " stages (each needs at least one)");
  }
  const std::vector<int64_t> counts = block_counts(layers, stages, stage_layers);
  std::vector<StageLayers> out;
  int64_t next = 0;
  for (int s = 0; s < stages; ++s) {
    StageLayers st;
    st.stage = s;
    st.first_layer = next;
    st.layers = counts[static_cast<size_t>(s)];
    st.has_embedding = s == 0;
    st.has_head = s == stages - 1;
    next += st.layers;
    out.push_back(st);
  }
  return out;
}

std::string describe_assignment(const std::vector<StageLayers>& stages, int64_t layers) {
  std::vector<int> owners(static_cast<size_t>(layers), 0);
  std::string text;
  for (const auto& st : stages) {
    for (int64_t l = st.first_layer; l < st.first_layer + st.layers; ++l) {
      if (l < 0 || l >= layers) throw std::logic_error("stage assignment: block out of range");
      ++owners[static_cast<size_t>(l)];
    }
    text += "  stage " + std::to_string(st.stage) + ": ";
    if (st.has_embedding) text += "embedding + ";
    text += "blocks " + std::to_string(st.first_layer) + "-" +
            std::to_string(st.first_layer + st.layers - 1);
    if (st.has_head) text += " + final norm, head, loss";
    text += "\n";
  }
  for (int64_t l = 0; l < layers; ++l) {
    if (owners[static_cast<size_t>(l)] != 1) {
      throw std::logic_error("stage assignment: block " + std::to_string(l) + " is held by " +
                             std::to_string(owners[static_cast<size_t>(l)]) + " stages");
    }
  }
  return text;
}

}  // namespace baleine::parallel
