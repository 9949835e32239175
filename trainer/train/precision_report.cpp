#include "trainer/train/precision_report.h"

#include <functional>
#include <iomanip>
#include <sstream>
#include <vector>

#include "trainer/model/expert_wire.h"

namespace baleine::train {

namespace {

struct Row {
  std::string blocks, linears, format;
};

// One row per run of consecutive blocks that have `linears` (has) in the same format.
void add_family(const config::ModelSection& m, const std::string& linears,
                const std::function<bool(int64_t)>& has,
                const std::function<std::string(int64_t)>& format, std::vector<Row>& rows) {
  int64_t first = -1;
  for (int64_t b = 0; b <= m.layers; ++b) {
    const bool extends = b < m.layers && has(b) && first >= 0 && format(b) == format(first);
    if (extends) continue;
    if (first >= 0) {
      const int64_t last = b - 1;
      rows.push_back({first == last ? "block " + std::to_string(first)
                                    : "blocks " + std::to_string(first) + "-" +
                                          std::to_string(last),
                      linears, format(first)});
    }
    first = b < m.layers && has(b) ? b : -1;
  }
}

}  // namespace

std::string describe_precision(const config::RunConfig& c, const model::PrecisionPlan& plan) {
  const config::ModelSection& m = c.model;
  const auto block_format = [&](int64_t b) { return model::describe(plan.for_block(b)); };
  const auto gate_format = [&](int64_t) { return model::describe(plan.gate()); };
  const auto any = [](int64_t) { return true; };
  const auto dense = [&](int64_t b) { return !m.is_moe_layer(b); };
  const auto moe = [&](int64_t b) { return m.is_moe_layer(b); };
  const auto shared = [&](int64_t b) { return m.is_moe_layer(b) && m.moe.shared_experts > 0; };

  std::vector<Row> rows;
  add_family(m, "attention.{wq,wk,wv,wo}", any, block_format, rows);
  add_family(m, "mlp.{w1,w3,w2}", dense, block_format, rows);
  add_family(m, "moe.gate", moe, gate_format, rows);
  add_family(m, "moe.shared.{w1,w3,w2}", shared, block_format, rows);
  add_family(m, "moe.experts.{0.." + std::to_string(m.moe.routed_experts - 1) + "}.{w1,w3,w2}",
             moe, block_format, rows);

  size_t wb = 0, wl = 0;
  for (const auto& r : rows) {
    wb = std::max(wb, r.blocks.size());
    wl = std::max(wl, r.linears.size());
  }
  std::ostringstream out;
  out << "precision: Linears " << c.precision.compute << ", AdamW moments "
      << c.precision.optimizer_state << ", master weights and gradients fp32\n";
  for (const auto& r : rows) {
    out << "  " << std::left << std::setw(static_cast<int>(wb)) << r.blocks << "  "
        << std::setw(static_cast<int>(wl)) << r.linears << "  " << r.format << "\n";
  }
  out << "  embedding, head, norms, attention core, routing: fp32\n";
  if (m.layers > m.dense_layers) {
    // The wire follows the experts' format (expert_wire.h); report the first MoE block's.
    const model::LinearFormat f = plan.for_block(m.dense_layers);
    out << "  EP wire: dispatch ";
    switch (f.precision) {
      case model::LinearPrecision::kFp32: out << "fp32, combine fp32"; break;
      case model::LinearPrecision::kBf16: out << "bf16, combine bf16"; break;
      case model::LinearPrecision::kFp8:
        out << "fp8 " << kernels::fp8_format_name(f.forward_format) << " ("
            << model::fp8_wire_row_bytes(m.hidden, f.tile) << " B/row with power-of-two scales, "
            << "bf16: " << 2 * m.hidden << " B/row), combine bf16";
        break;
    }
    out << "; backward moves bf16 unless fp32\n";
  }
  return out.str();
}

}  // namespace baleine::train
