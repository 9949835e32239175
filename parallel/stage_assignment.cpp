#include "parallel/stage_assignment.h"

#include <stdexcept>

namespace baleine::parallel {

std::vector<StageLayers> assign_layers(int64_t layers, int stages) {
  if (stages < 1 || layers < stages) {
    throw std::invalid_argument("assign_layers: " + std::to_string(layers) + " blocks cannot fill " +
                                std::to_string(stages) + " stages (each needs at least one)");
  }
  std::vector<StageLayers> out;
  int64_t next = 0;
  for (int s = 0; s < stages; ++s) {
    StageLayers st;
    st.stage = s;
    st.first_layer = next;
    st.layers = layers / stages + (s < layers % stages ? 1 : 0);
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
