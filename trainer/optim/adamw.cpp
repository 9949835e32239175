#include "trainer/optim/adamw.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace baleine::optim {

using model::Placement;

MomentPrecision moment_precision(const config::PrecisionSection& precision) {
  if (precision.optimizer_state == "fp32") return MomentPrecision::kFp32;
  if (precision.optimizer_state == "bf16") return MomentPrecision::kBf16;
  // load_config refuses other values; a config built in code must not fall back silently.
  throw std::invalid_argument("precision.optimizer_state: unknown value '" +
                              precision.optimizer_state + "' (fp32 | bf16)");
}

const char* moment_precision_name(MomentPrecision precision) {
  return precision == MomentPrecision::kBf16 ? "BF16" : "FP32";
}

AdamW::AdamW(const config::AdamWSection& hyper, double grad_clip,
             const model::ParameterStore<float>& params, const DataParallelGroups& groups,
             bool zero, MomentPrecision moments)
    : backend_(model::current_backend()),
      hyper_(hyper),
      grad_clip_(grad_clip),
      groups_(groups),
      zero_(zero),
      moments_(moments) {
  model::BackendScope scope(backend_);
  for (const Placement placement : {Placement::kReplicated, Placement::kExpert}) {
    const auto region = params.region(placement);
    parallel::Comm* group = placement == Placement::kReplicated ? groups.dp_buffers()
                                                                : groups.expert_dp_buffers();
    Segment s;
    s.shard = make_shard(region, zero ? group : nullptr);
    s.first = region.offset + std::min(s.shard.begin, region.size);
    s.count = std::min(s.shard.end(), region.size) - std::min(s.shard.begin, region.size);
    // Both formats start at +0 (BF16 code 0x0000 is +0.0).
    if (moments == MomentPrecision::kBf16) {
      s.m_bf16.assign(static_cast<size_t>(s.count), 0);
      s.v_bf16.assign(static_cast<size_t>(s.count), 0);
    } else {
      s.m.assign(static_cast<size_t>(s.count), 0.0f);
      s.v.assign(static_cast<size_t>(s.count), 0.0f);
    }
    segments_.push_back(std::move(s));
  }
}

const float* AdamW::segment_grad(const model::ParameterStore<float>& params,
                                 const Segment& s) const {
  return zero_ ? s.grad.data() : params.grads().data() + s.first;
}

StepStats AdamW::step(model::ParameterStore<float>& params, double lr, int64_t step) {
  const StepStats stats = measure(params);
  apply(params, lr, step, stats);
  return stats;
}

std::vector<AdamW::MomentSlice> AdamW::moment_slices() {
  std::vector<MomentSlice> slices;
  for (size_t i = 0; i < segments_.size(); ++i) {
    Segment& s = segments_[i];
    MomentSlice slice;
    // The constructor builds the segments in this order.
    slice.placement = i == 0 ? Placement::kReplicated : Placement::kExpert;
    slice.first = s.first;
    slice.count = s.count;
    slice.holders = slice.placement == Placement::kReplicated ? groups_.dp : groups_.expert_dp;
    slice.sharded = zero_;
    if (moments_ == MomentPrecision::kBf16) {
      slice.m_bf16 = s.m_bf16.data();
      slice.v_bf16 = s.v_bf16.data();
    } else {
      slice.m = s.m.data();
      slice.v = s.v.data();
    }
    slice.memory = backend_.memory;
    slices.push_back(slice);
  }
  return slices;
}

StepStats AdamW::measure(model::ParameterStore<float>& params) {
  model::BackendScope scope(backend_);
  model::ParameterOps& ops = *backend_.parameters;
  const int64_t dp_size = groups_.dp ? groups_.dp->size() : 1;
  const int copies = groups_.mirror ? groups_.mirror->size() : 1;
  if (copies > 1) {
    allreduce_in_buckets(groups_.mirror_buffers(), params.grads().memory(),
                         params.grads().data(), params.total(),
                         bucket_elements(groups_.bucket_mb));
  }
  if (zero_) {
    for (auto& s : segments_) {
      reduce_scatter_gradients(params, s.shard, dp_size, ops, s.padded, s.grad);
    }
  } else {
    average_gradients(params, groups_, ops);
  }

  // Σ g² over the whole model, each element counted once. Replicated: identical on every dp
  // rank (or sharded over dp under ZeRO); experts: distinct over the EP group (or sharded over
  // the whole dp group under ZeRO).
  double replicated = ops.sum_of_squares(segment_grad(params, segments_[0]), segments_[0].count);
  double experts = ops.sum_of_squares(segment_grad(params, segments_[1]), segments_[1].count);
  if (zero_) {
    double sums[2] = {replicated, experts};
    if (groups_.dp && groups_.dp->size() > 1) groups_.dp->allreduce_sum(sums, 2, parallel::DType::kFloat64);
    replicated = sums[0];
    experts = sums[1];
  } else if (groups_.ep && groups_.ep->size() > 1) {
    groups_.ep->allreduce_sum(&experts, 1, parallel::DType::kFloat64);
  }
  if (groups_.pp && groups_.pp->size() > 1) {
    double sums[2] = {replicated, experts};
    groups_.pp->allreduce_sum(sums, 2, parallel::DType::kFloat64);
    replicated = sums[0] / copies;
    experts = sums[1] / copies;
  }
  StepStats stats;
  stats.grad_norm = std::sqrt(replicated + experts);
  if (grad_clip_ > 0 && stats.grad_norm > grad_clip_) stats.clip_scale = grad_clip_ / stats.grad_norm;
  return stats;
}

void AdamW::apply(model::ParameterStore<float>& params, double lr, int64_t step,
                  const StepStats& stats) {
  model::BackendScope scope(backend_);
  model::ParameterOps& ops = *backend_.parameters;
  kernels::AdamWStep k;
  k.lr = static_cast<float>(lr);
  k.beta1 = static_cast<float>(hyper_.beta1);
  k.beta2 = static_cast<float>(hyper_.beta2);
  k.eps = static_cast<float>(hyper_.eps);
  k.step = step;
  k.grad_scale = static_cast<float>(stats.clip_scale);
  float* values = params.values().data();
  for (auto& s : segments_) {
    const float* grad = segment_grad(params, s);
    // The segment may start or end inside a parameter: update the overlap of each entry.
    for (const auto& e : params.entries()) {
      const auto [lo, hi] = model::overlap(e, s.first, s.count);
      if (lo >= hi) continue;
      k.weight_decay = e.weight_decay ? static_cast<float>(hyper_.weight_decay) : 0.0f;
      const int64_t at = lo - s.first;
      if (moments_ == MomentPrecision::kBf16) {
        ops.adamw_update_bf16_moments(values + lo, grad + at, s.m_bf16.data() + at,
                                      s.v_bf16.data() + at, hi - lo, k);
      } else {
        ops.adamw_update(values + lo, grad + at, s.m.data() + at, s.v.data() + at, hi - lo, k);
      }
    }
    if (zero_) {
      // Send the updated shard (zero-padded past the region's end) to every rank of its group.
      s.shard_values.assign(static_cast<size_t>(s.shard.shard), 0.0f);
      params.values().memory().copy(s.shard_values.data(), values + s.first,
                                    static_cast<size_t>(s.count) * sizeof(float));
      allgather_parameters(params, s.shard, s.shard_values.data(), s.padded);
    }
  }
}

int64_t AdamW::state_bytes() const {
  int64_t n = 0;
  for (const auto& s : segments_) {
    n += static_cast<int64_t>((s.m.size() + s.v.size()) * sizeof(float) +
                              (s.m_bf16.size() + s.v_bf16.size()) * sizeof(uint16_t));
  }
  return n;
}

}  // namespace baleine::optim
