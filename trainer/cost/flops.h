#pragma once
// Training FLOPs per token, from the model config: 6 x the parameters a token multiplies
// (dense matmuls: attention projections, dense MLPs, the MoE gate, the shared experts and only
// its top-k routed experts, and the head; the embedding is a table lookup), plus attention's
// sequence-dependent term. The formula, with numbers, is printed at the start of a run.
#include <cstdint>
#include <string>

#include "trainer/config/config.h"

namespace baleine::cost {

struct FlopsPerToken {
  double total_params = 0;    // every parameter (count_parameters().total)
  double active_params = 0;   // per token, including the embedding (count_parameters().active)
  double matmul_params = 0;   // active_params minus the embedding table
  double dense = 0;           // 6 x matmul_params
  double attention = 0;       // causal QK^T and AV, forward + backward
  double total = 0;           // dense + attention
  // e.g. "6 x 1.23M matmul parameters + 6 x 4 layers x 128 seq x 96 hidden (causal attention)
  //       = 7.68 MFLOP/token"
  std::string formula;
};

FlopsPerToken flops_per_token(const config::ModelSection& model, int64_t seq_len);

}  // namespace baleine::cost
