#pragma once
// AdamW over a ParameterStore's flat buffers, with global-norm gradient clipping, data-parallel
// gradient averaging and, optionally, ZeRO-1 (Rajbhandari et al. 2020): each data-parallel rank
// keeps the moments of, and updates, only its shard of every region, then the updated shards
// are all-gathered. Master weights and gradients are FP32; the moments are FP32 or BF16
// (precision.optimizer_state), each rank keeping them for exactly the elements it updates.
// Moments and staging live in the parameters' memory and every update runs on the backend
// current at construction (model/backend.h): the host's, or a GPU's, with no copy to the host
// but the norm's two doubles.
#include <cstdint>
#include <vector>

#include "kernels/array.h"
#include "trainer/config/config.h"
#include "trainer/model/backend.h"
#include "trainer/model/parameters.h"
#include "trainer/optim/data_parallel.h"

namespace baleine::optim {

// How AdamW stores its moments m and v. BF16 halves the optimizer state (DeepSeek-V3 report
// §3.3.3); the update itself is computed in FP32 either way (kernels/adamw.h).
enum class MomentPrecision { kFp32, kBf16 };

// From precision.optimizer_state ("fp32" | "bf16"); std::invalid_argument for anything else.
MomentPrecision moment_precision(const config::PrecisionSection& precision);
const char* moment_precision_name(MomentPrecision precision);  // "FP32" | "BF16"

struct StepStats {
  double grad_norm = 0;   // global L2 norm before clipping, over the whole model
  double clip_scale = 1;  // factor applied to the gradients (1 = not clipped)
};

class AdamW {
 public:
  AdamW(const config::AdamWSection& hyper, double grad_clip,
        const model::ParameterStore<float>& params, const DataParallelGroups& groups = {},
        bool zero = false, MomentPrecision moments = MomentPrecision::kFp32);
  // Averages the gradients over data parallelism, clips, and updates at learning rate lr;
  // step is 1-based (bias correction). The same as measure() then apply().
  StepStats step(model::ParameterStore<float>& params, double lr, int64_t step);
  // Collective: averages the gradients over data parallelism and measures their global norm,
  // leaving parameters and moments untouched (the numerical guard looks before the update).
  StepStats measure(model::ParameterStore<float>& params);
  // Collective (ZeRO-1 all-gathers the updated shards): the update measure() prepared.
  void apply(model::ParameterStore<float>& params, double lr, int64_t step,
             const StepStats& stats);

  // The moments this rank keeps, for checkpoints: one slice per region, in flat-buffer
  // coordinates [first, first + count). `holders` is the group the slice is replicated over
  // (without ZeRO: identical on every member) or sharded over (ZeRO: each member its own part);
  // nullptr when this rank alone holds it. The pointers are in `memory` (read them on the host
  // through it when it is not the host's).
  struct MomentSlice {
    model::Placement placement = model::Placement::kReplicated;
    int64_t first = 0, count = 0;
    parallel::Comm* holders = nullptr;
    bool sharded = false;
    float* m = nullptr;              // FP32 moments, or nullptr
    float* v = nullptr;
    uint16_t* m_bf16 = nullptr;      // BF16 moments (bit patterns), or nullptr
    uint16_t* v_bf16 = nullptr;
    kernels::Memory* memory = nullptr;
  };
  std::vector<MomentSlice> moment_slices();
  int64_t state_bytes() const;  // moments held by this rank, in their stored format
  bool sharded() const { return zero_; }
  MomentPrecision moments() const { return moments_; }

 private:
  // A contiguous range of one region that this rank updates: the whole region, or its ZeRO
  // shard. first/count are in flat-buffer coordinates, clipped to the region's real end.
  struct Segment {
    Shard shard;
    int64_t first = 0, count = 0;
    kernels::Array<float> m, v;               // FP32 moments (empty when BF16)
    kernels::Array<uint16_t> m_bf16, v_bf16;  // BF16 moments as bit patterns (empty when FP32)
    // ZeRO: the reduced shard gradient, the padded region and this rank's updated shard.
    kernels::Array<float> grad, padded, shard_values;
  };
  const float* segment_grad(const model::ParameterStore<float>& params, const Segment& s) const;

  model::Backend& backend_;
  config::AdamWSection hyper_;
  double grad_clip_;
  DataParallelGroups groups_;
  bool zero_;
  MomentPrecision moments_;
  std::vector<Segment> segments_;  // replicated, expert
};

}  // namespace baleine::optim
