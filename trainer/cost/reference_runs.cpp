#include "trainer/cost/reference_runs.h"

namespace baleine::cost {

const std::vector<ReferenceRun>& reference_runs() {
  static const std::vector<ReferenceRun> runs = {
      // DeepSeek-V3 Technical Report (arXiv:2412.19437), §1 and Table 1: 2664K + 119K + 5K =
      // 2788K H800 GPU-hours, $5.576M at $2 per GPU-hour; 14.8T pre-training tokens; 671B
      // parameters, 37B activated per token; 180K GPU-hours per trillion tokens.
      {"DeepSeek-V3", "H800", 2788e3, 14.8e12, 37e9, 671e9, 2.0,
       {{"pretraining", 2664e3}, {"context_extension", 119e3}, {"post_training", 5e3}},
       "DeepSeek-V3 Technical Report, arXiv:2412.19437, Table 1"},
      // Llama 3.1 model card ("Training Energy Use": 30.84M H100-80GB GPU-hours for 405B) and
      // The Llama 3 Herd of Models, arXiv:2407.21783, §3 (405B dense, 15.6T tokens). No price
      // is given; reports price it at the run's own rate.
      {"Llama 3.1 405B", "H100-SXM", 30.84e6, 15.6e12, 405e9, 405e9, 0.0, {},
       "Llama 3.1 model card (MODEL_CARD.md, Training Energy Use); arXiv:2407.21783"},
  };
  return runs;
}

}  // namespace baleine::cost
