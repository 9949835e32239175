#pragma once
// Model shapes the model tests share.
#include "trainer/config/config.h"

namespace baleine::testing {

// configs/quickstart.yaml's model section (4 blocks, the first dense; 8 routed experts top-2
// plus a shared one), with the sequence-wise balance loss on so its path runs too.
inline config::ModelSection quickstart_model() {
  config::ModelSection m;
  m.hidden = 96;
  m.layers = 4;
  m.heads = 4;
  m.intermediate = 256;
  m.dense_layers = 1;
  m.moe.routed_experts = 8;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 96;
  m.moe.seq_aux_alpha = 1e-3;
  return m;
}

// A smaller MoE: 3 blocks (1 dense), 4 routed experts top-2 plus a shared one.
inline config::ModelSection small_moe_model() {
  config::ModelSection m;
  m.hidden = 96;
  m.heads = 4;
  m.layers = 3;
  m.dense_layers = 1;
  m.intermediate = 192;
  m.moe.routed_experts = 4;
  m.moe.shared_experts = 1;
  m.moe.top_k = 2;
  m.moe.intermediate = 64;
  return m;
}

}  // namespace baleine::testing
