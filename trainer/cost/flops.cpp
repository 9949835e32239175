#include "trainer/cost/flops.h"

#include <string>

#include "trainer/cost/units.h"
#include "trainer/model/model.h"

namespace baleine::cost {

FlopsPerToken flops_per_token(const config::ModelSection& model, int64_t seq_len) {
  const model::ParameterCounts counts = model::count_parameters(model);
  FlopsPerToken f;
  f.total_params = static_cast<double>(counts.total);
  f.active_params = static_cast<double>(counts.active);
  // The embedding is a table lookup: no multiply-adds. (The norm gains left in, a few
  // thousand per block, are elementwise; they are well under 0.01% of any real model.)
  f.matmul_params = static_cast<double>(counts.active - counts.embedding);
  // Each matmul parameter costs 2 FLOP per token forward (one multiply, one add) and 4
  // backward (input and weight gradients): 6 per token (Kaplan et al. 2020, "Scaling Laws for
  // Neural Language Models", §2.1).
  f.dense = 6.0 * f.matmul_params;
  // Attention's score and value products grow with the sequence. Per layer and token: 2
  // matmuls (QK^T, AV) x 2 FLOP x `hidden` per key x seq/2 keys on average under the causal
  // mask, x 3 for forward + backward = 6 x seq x hidden. PaLM (Chowdhery et al. 2022, App. B)
  // counts 12 x L x H x Q x T with every key attended; we halve it for causal masking.
  const double layers = static_cast<double>(model.layers);
  const double seq = static_cast<double>(seq_len);
  const double hidden = static_cast<double>(model.hidden);
  f.attention = 6.0 * layers * seq * hidden;
  f.total = f.dense + f.attention;
  f.formula = "6 x " + format_count(f.matmul_params) + " matmul parameters + 6 x " +
              std::to_string(model.layers) + " layers x " + std::to_string(seq_len) +
              " seq x " + std::to_string(model.hidden) + " hidden (causal attention) = " +
              format_si(f.total, "FLOP") + "/token";
  return f;
}

}  // namespace baleine::cost
