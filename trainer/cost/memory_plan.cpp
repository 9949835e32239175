#include "trainer/cost/memory_plan.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "parallel/schedule.h"
#include "trainer/cost/units.h"
#include "trainer/model/linear.h"

namespace baleine::cost {

namespace {

// The model trains in float; its non-Linear saved state and the routing indices are these.
constexpr double kValueBytes = sizeof(float);
constexpr double kIndexBytes = sizeof(int32_t);

// What LinearInput::bytes() gives for a [rows, cols] input saved in `format`.
double input_bytes(const model::LinearFormat& format, double rows, double cols) {
  switch (format.precision) {
    case model::LinearPrecision::kFp32: return kValueBytes * rows * cols;
    case model::LinearPrecision::kBf16: return 2.0 * rows * cols;
    case model::LinearPrecision::kFp8:
      // One byte per code and one FP32 scale per 1 x tile tile of each row.
      return rows * cols + 4.0 * rows * std::ceil(cols / static_cast<double>(format.tile));
  }
  return 0;
}

void add_attention(const config::ModelSection& m, const model::LinearFormat& f, double n,
                   double micro_batch, double seq, ActivationEstimate& e) {
  const double d = static_cast<double>(m.hidden);
  // x (the input of Wq, Wk, Wv) and o (the input of Wo).
  e.linear_inputs += 2.0 * input_bytes(f, n, d);
  // q, k, v after RoPE, and one log-sum-exp per query row and head: the attention core
  // recomputes the softmax from them in the backward (FlashAttention, Dao et al. 2022) rather
  // than keeping every head's seq x seq probabilities.
  const double lse = kValueBytes * micro_batch * static_cast<double>(m.heads) * seq;
  e.attention_lse += lse;
  e.block_other += kValueBytes * 3.0 * n * d + lse;
}

void add_dense_mlp(const config::ModelSection& m, const model::LinearFormat& f, double n,
                   ActivationEstimate& e) {
  const double d = static_cast<double>(m.hidden), width = static_cast<double>(m.intermediate);
  e.linear_inputs += input_bytes(f, n, d) + input_bytes(f, n, width);  // x; h = silu(a) * b
  e.block_other += kValueBytes * 2.0 * n * width;                      // a = x W1, b = x W3
}

// DeepSeek-MoE (trainer/model/moe_layer.h, Saved). Under balanced expert parallelism a rank's
// experts receive as many (token, slot) rows as it sends: tokens x top_k.
void add_moe(const config::ModelSection& m, const model::LinearFormat& f,
             const model::LinearFormat& gate, double n, int64_t ep, ActivationEstimate& e) {
  const double d = static_cast<double>(m.hidden);
  const double experts = static_cast<double>(m.moe.routed_experts);
  const double width = static_cast<double>(m.moe.intermediate);
  const double rows = n * static_cast<double>(m.moe.top_k);
  const bool fp32 = f.precision == model::LinearPrecision::kFp32;

  e.linear_inputs += input_bytes(gate, n, d);  // the gate's input
  // The rows the experts received: as they arrived (BF16 / FP8 wire), or as FP32 values.
  e.linear_inputs += fp32 ? kValueBytes * rows * d : input_bytes(f, rows, d);
  // Routing: scores [tokens, experts] and weights per row (T); chosen, row_token and
  // assignment_row per row, offsets per expert + 1 (int32).
  e.block_other += kValueBytes * (n * experts + rows) + kIndexBytes * (3.0 * rows + experts + 1);
  // The experts' SwiGLU: a and b (T), h (a Linear input) and the outputs y per received row.
  e.block_other += kValueBytes * (2.0 * rows * width + rows * d);
  e.linear_inputs += input_bytes(f, rows, width);
  // The outputs combined back to the token's rank: decoded from the BF16 wire into a buffer,
  // or (FP32) moved into one when the exchange is not local.
  if (!fp32 || ep > 1) e.block_other += kValueBytes * rows * d;
  // FP32 over several EP ranks also keeps the permuted rows it sent. (Model::
  // take_activation_bytes leaves these out; they are held all the same.)
  if (fp32 && ep > 1) e.block_other += kValueBytes * rows * d;

  if (m.moe.shared_experts > 0) {  // one SwiGLU of width shared x expert width
    const double shared_width = static_cast<double>(m.moe.shared_experts) * width;
    e.linear_inputs += input_bytes(f, n, d) + input_bytes(f, n, shared_width);
    e.block_other += kValueBytes * 2.0 * n * shared_width;
  }
}

std::string layers_text(const parallel::StageLayers& s) {
  std::string text;
  if (s.has_embedding) text += "embedding, ";
  text += s.layers == 1 ? "block " + std::to_string(s.first_layer)
                        : "blocks " + std::to_string(s.first_layer) + "-" +
                              std::to_string(s.first_layer + s.layers - 1);
  if (s.has_head) text += ", head";
  return text;
}

struct HeldStage {
  std::string name;  // "stage 3", "stage 12 of direction 1"
  parallel::StageLayers layers;
};

std::vector<std::vector<HeldStage>> stages_by_rank(const config::RunConfig& c,
                                                   std::vector<int>* peak_in_flight) {
  const int64_t layers = c.model.layers;
  if (c.parallel.pp == 1) {
    *peak_in_flight = {1};  // F then B of each micro-batch: one micro-batch held at a time
    return {{{"the whole model", parallel::assign_layers(layers, 1).front()}}};
  }
  parallel::ScheduleKind kind{};
  parallel::parse_schedule_name(c.parallel.schedule, &kind);
  const parallel::Schedule schedule = parallel::make_schedule(
      kind, static_cast<int>(c.parallel.pp), static_cast<int>(c.grad_accum_steps()));
  // The peak is what the schedule's op order allows, whatever the op costs: default costs.
  *peak_in_flight = parallel::simulate(schedule, parallel::Costs{}).peak_activations;
  const std::vector<parallel::StageLayers> assignment =
      parallel::assign_layers(layers, schedule.stages, c.parallel.stage_layers);
  std::vector<std::vector<HeldStage>> held(static_cast<size_t>(schedule.ranks));
  for (int r = 0; r < schedule.ranks; ++r) {
    for (const parallel::StageRef& ref : schedule.stages_of_rank[static_cast<size_t>(r)]) {
      std::string name = "stage " + std::to_string(ref.stage);
      if (schedule.directions > 1) name += " of direction " + std::to_string(ref.direction);
      held[static_cast<size_t>(r)].push_back({name, assignment[static_cast<size_t>(ref.stage)]});
    }
  }
  return held;
}

double ceil_div(double a, double b) { return std::ceil(a / b); }

}  // namespace

ActivationEstimate estimate_activations(const config::ModelSection& m,
                                        const config::PrecisionSection& precision,
                                        const parallel::StageLayers& stage, int64_t micro_batch,
                                        int64_t seq_len, int64_t ep) {
  const model::PrecisionPlan formats = model::plan_precision(precision);
  const double batch = static_cast<double>(micro_batch), seq = static_cast<double>(seq_len);
  const double n = batch * seq, d = static_cast<double>(m.hidden);
  ActivationEstimate e;
  for (int64_t l = stage.first_layer; l < stage.first_layer + stage.layers; ++l) {
    const model::LinearFormat f = formats.for_block(l);
    e.block_other += kValueBytes * (n + n * d + n);  // rstd1, h = x + attention, rstd2
    add_attention(m, f, n, batch, seq, e);
    if (m.is_moe_layer(l)) {
      add_moe(m, f, formats.gate(), n, ep, e);
    } else {
      add_dense_mlp(m, f, n, e);
    }
  }
  e.stream = kValueBytes * static_cast<double>(stage.layers + 1) * n * d;
  if (stage.has_embedding) e.ends += kIndexBytes * n;  // the token ids
  if (stage.has_head) {
    // Final norm output and rstd, logits over the whole vocabulary, log-sum-exp, targets.
    e.ends += kValueBytes * (n * d + n + n * static_cast<double>(m.vocab_size) + n) +
              kIndexBytes * n;
  }
  return e;
}

StageParameters stage_parameters(const config::ModelSection& m,
                                 const parallel::StageLayers& stage, int64_t ep) {
  const int64_t d = m.hidden;
  const int64_t per_expert = 3 * m.moe.intermediate * d;  // w1, w3, w2
  StageParameters p;
  if (stage.has_embedding) p.replicated += m.vocab_size * d;
  for (int64_t l = stage.first_layer; l < stage.first_layer + stage.layers; ++l) {
    p.replicated += 2 * d + 4 * d * d;  // norms; wq, wk, wv, wo
    if (m.is_moe_layer(l)) {
      p.replicated += m.moe.routed_experts * d + m.moe.shared_experts * per_expert;  // gate
      p.expert += m.moe.routed_experts / ep * per_expert;
    } else {
      p.replicated += 3 * d * m.intermediate;
    }
  }
  if (stage.has_head) p.replicated += d + m.vocab_size * d;  // final norm, head
  return p;
}

MemoryPlan plan_memory(const config::RunConfig& c) {
  std::vector<int> peaks;
  const std::vector<std::vector<HeldStage>> held = stages_by_rank(c, &peaks);
  const model::PrecisionPlan formats = model::plan_precision(c.precision);
  const double dp = static_cast<double>(c.parallel.dp);
  const double expert_dp = static_cast<double>(c.parallel.dp / c.parallel.ep);
  const bool zero = c.parallel.zero == 1;
  const bool bf16_moments = c.precision.optimizer_state == "bf16";

  MemoryPlan plan;
  for (size_t r = 0; r < held.size(); ++r) {
    RankMemory rank;
    rank.rank = static_cast<int>(r);
    rank.peak_in_flight = std::max(1, peaks[r]);
    for (const HeldStage& s : held[r]) {
      rank.holds += (rank.holds.empty() ? "" : " + ") + s.name + " (" + layers_text(s.layers) +
                    ")";
      const StageParameters p = stage_parameters(c.model, s.layers, c.parallel.ep);
      rank.parameters.replicated += p.replicated;
      rank.parameters.expert += p.expert;
      const ActivationEstimate a = estimate_activations(c.model, c.precision, s.layers,
                                                        c.train.micro_batch, c.train.seq_len,
                                                        c.parallel.ep);
      if (a.total() > rank.per_micro_batch.total()) rank.per_micro_batch = a;
    }
    const double params = static_cast<double>(rank.parameters.total());
    const double replicated = static_cast<double>(rank.parameters.replicated);
    const double expert = static_cast<double>(rank.parameters.expert);

    const std::string copies = c.precision.compute == "fp32"
                                   ? "the GEMMs read them directly"
                                   : "the " + c.precision.compute +
                                         " GEMM operands are made per call, not kept";
    rank.components.push_back({"weights", "FP32 master", format_count(params) +
                                   " parameters x 4 bytes (" + copies + ")",
                               4.0 * params});
    rank.components.push_back({"gradients", "FP32", format_count(params) + " x 4 bytes",
                               4.0 * params});
    // ZeRO-1 (Rajbhandari et al. 2020) shards each region over the ranks that share it:
    // replicated parameters over dp, routed experts over the dp / ep ranks with the same ones.
    const double updated =
        zero ? ceil_div(replicated, dp) + ceil_div(expert, expert_dp) : params;
    const double moment_bytes = bf16_moments ? 2.0 : 4.0;
    rank.components.push_back(
        {"optimizer", std::string(bf16_moments ? "BF16" : "FP32") + " AdamW m and v",
         "2 moments x " + std::string(bf16_moments ? "2" : "4") + " bytes x " +
             format_count(updated) +
             (zero ? " parameters updated here (ZeRO-1: replicated / dp " +
                         std::to_string(c.parallel.dp) + ", experts / (dp / ep) " +
                         std::to_string(c.parallel.dp / c.parallel.ep) + ")"
                   : " parameters"),
         2.0 * moment_bytes * updated});
    if (zero) {
      // trainer/optim/data_parallel.cpp stages each region whole (padded) for the
      // reduce-scatter and the all-gather, and keeps the reduced shard gradient.
      rank.components.push_back({"ZeRO-1 staging", "FP32",
                                 "a padded copy of each region for reduce-scatter / "
                                 "all-gather, plus the reduced shard gradient",
                                 4.0 * (params + updated)});
    }
    const ActivationEstimate& a = rank.per_micro_batch;
    const std::string schedule =
        c.parallel.pp == 1 ? "no pipeline: F then B per micro-batch"
                           : c.parallel.schedule + "'s peak on this rank";
    rank.components.push_back(
        {"activations",
         c.precision.compute == "fp32"
             ? "FP32"
             : "Linear inputs " + model::describe(formats.compute) + ", the rest FP32",
         std::to_string(rank.peak_in_flight) + " micro-batch(es) in flight (" + schedule +
             ") x " + format_si(a.total(), "B") + " per micro-batch of " +
             std::to_string(c.train.micro_batch) + " x " + std::to_string(c.train.seq_len) +
             " tokens (Linear inputs " + format_si(a.linear_inputs, "B") +
             ", attention log-sum-exps " + format_si(a.attention_lse, "B") +
             ", other block state " + format_si(a.block_other - a.attention_lse, "B") +
             ", residual stream " + format_si(a.stream, "B") + ", embedding / head " +
             format_si(a.ends, "B") + ")",
         static_cast<double>(rank.peak_in_flight) * a.total()});
    for (const MemoryComponent& component : rank.components) rank.total_bytes += component.bytes;
    plan.ranks.push_back(rank);
  }
  for (size_t r = 1; r < plan.ranks.size(); ++r) {
    if (plan.ranks[r].total_bytes > plan.worst().total_bytes) {
      plan.most_loaded = static_cast<int>(r);
    }
  }
  return plan;
}

}  // namespace baleine::cost
