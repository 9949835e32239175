#include "trainer/train/expert_balance.h"

#include <algorithm>

namespace baleine::train {

using parallel::DType;

ExpertBalance balance_experts(model::Model<float>& model, const parallel::ProcessGroups& g,
                              const std::vector<bool>& reported, double speed) {
  const auto& c = model.config();
  const auto held = model.moe_layers();
  const auto indices = model.moe_layer_indices();
  const int64_t experts = c.moe.routed_experts;

  std::vector<int64_t> loads;
  for (auto* moe : held) loads.insert(loads.end(), moe->load().begin(), moe->load().end());
  if (!loads.empty()) {
    const auto n = static_cast<int64_t>(loads.size());
    g.dp->allreduce_sum(loads.data(), n, DType::kInt64);
    if (g.mirror) g.mirror->allreduce_sum(loads.data(), n, DType::kInt64);
  }

  // The whole model's table: each layer's row filled by the rank that reports it.
  const int64_t moe_layers = c.layers - c.dense_layers;
  std::vector<int64_t> all_loads(static_cast<size_t>(moe_layers * experts), 0);
  std::vector<double> all_bias(all_loads.size(), 0.0);
  for (size_t i = 0; i < held.size(); ++i) {
    const auto first = loads.begin() + static_cast<int64_t>(i) * experts;
    held[i]->restore_load({first, first + experts});
    if (!reported[i]) continue;
    const int64_t row = (indices[i] - c.dense_layers) * experts;
    std::copy(first, first + experts, all_loads.begin() + row);
    std::copy(held[i]->bias().begin(), held[i]->bias().end(), all_bias.begin() + row);
  }
  // After the biases of this step were recorded; also resets the load counters.
  for (auto* moe : held) moe->update_bias(speed);
  if (g.pp && g.pp->size() > 1 && moe_layers > 0) {
    g.pp->allreduce_sum(all_loads.data(), static_cast<int64_t>(all_loads.size()), DType::kInt64);
    g.pp->allreduce_sum(all_bias.data(), static_cast<int64_t>(all_bias.size()), DType::kFloat64);
  }

  ExpertBalance balance;
  for (int64_t m = 0; m < moe_layers; ++m) {
    ExpertLoadRecord r;
    r.layer = c.dense_layers + m;
    r.load.assign(all_loads.begin() + m * experts, all_loads.begin() + (m + 1) * experts);
    for (int64_t e = 0; e < experts; ++e) {
      r.bias.push_back(static_cast<float>(all_bias[m * experts + e]));
    }
    r.imbalance = model::load_imbalance(r.load);
    balance.max_imbalance = m == 0 ? r.imbalance : std::max(balance.max_imbalance, r.imbalance);
    balance.layers.push_back(std::move(r));
  }
  return balance;
}

}  // namespace baleine::train
