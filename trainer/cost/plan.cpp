#include "trainer/cost/plan.h"

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <stdexcept>

#include "trainer/config/value_text.h"
#include "trainer/cost/device_rates.h"
#include "trainer/cost/reference_runs.h"
#include "trainer/cost/report.h"
#include "trainer/cost/units.h"

namespace baleine::cost {

namespace {

constexpr double kSecondsPerHour = 3600.0;
constexpr double kTrillion = 1e12;

std::string percent(double fraction) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f%%", 100.0 * fraction);
  return buffer;
}

std::string number(double value) { return config::value_text(value); }

// "54.2 days", "2.44 hours", "9.6 minutes", "12 seconds".
std::string duration(double days) {
  if (days >= 1) return significant(days, 3) + " days";
  const double hours = days * 24;
  if (hours >= 1) return significant(hours, 3) + " hours";
  if (hours * 60 >= 1) return significant(hours * 60, 3) + " minutes";
  return significant(hours * 3600, 3) + " seconds";
}

// Aligned columns, two spaces apart, each row indented by two.
void print_table(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line = " ";
    for (size_t i = 0; i < row.size(); ++i) {
      line += " " + row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 1, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();  // an empty last cell
    out << line << "\n";
  }
}

// The token budget: the flag, else cost.token_budget, else what train.steps would train.
void choose_tokens(const config::RunConfig& c, const PlanOptions& o, Plan& plan) {
  if (o.tokens > 0) {
    plan.tokens = o.tokens;
    plan.tokens_source = "--tokens";
  } else if (c.cost.token_budget > 0) {
    plan.tokens = c.cost.token_budget;
    plan.tokens_source = "cost.token_budget";
  } else {
    plan.tokens = static_cast<double>(c.train.steps) *
                  static_cast<double>(c.train.global_batch) *
                  static_cast<double>(c.train.seq_len);
    plan.tokens_source = "train.steps x global_batch x seq_len = " +
                         std::to_string(c.train.steps) + " x " +
                         std::to_string(c.train.global_batch) + " x " +
                         std::to_string(c.train.seq_len);
  }
}

// Tokens per second per device: the flag, else the first non-zero of cost.plan's
// gpu_hours_per_trillion_tokens, tokens_per_gpu_s, mfu.
void choose_throughput(const config::RunConfig& c, const PlanOptions& o, Plan& plan) {
  const int given = (o.mfu > 0) + (o.tokens_per_gpu_s > 0) + (o.gpu_hours_per_trillion_tokens > 0);
  if (given > 1) {
    throw std::invalid_argument("make_plan: more than one planning throughput given");
  }
  const config::CostPlanSection& p = c.cost.plan;
  const double peak_flops = plan.device.bf16_tflops * 1e12;
  auto from_hours = [&](double hours_per_trillion, const std::string& source) {
    plan.tokens_per_device_s = kTrillion / (hours_per_trillion * kSecondsPerHour);
    plan.throughput_source = source + " = " + number(hours_per_trillion);
  };
  auto from_rate = [&](double tokens_per_s, const std::string& source) {
    plan.tokens_per_device_s = tokens_per_s;
    plan.throughput_source = source + " = " + number(tokens_per_s);
  };
  auto from_mfu = [&](double mfu, const std::string& source) {
    plan.tokens_per_device_s = mfu * peak_flops / plan.flops.total;
    plan.throughput_source = source + " = " + number(mfu) + " of the BF16 dense peak";
  };
  if (o.gpu_hours_per_trillion_tokens > 0) {
    from_hours(o.gpu_hours_per_trillion_tokens, "--gpu-hours-per-trillion-tokens");
  } else if (o.tokens_per_gpu_s > 0) {
    from_rate(o.tokens_per_gpu_s, "--tokens-per-gpu-s");
  } else if (o.mfu > 0) {
    from_mfu(o.mfu, "--mfu");
  } else if (p.gpu_hours_per_trillion_tokens > 0) {
    from_hours(p.gpu_hours_per_trillion_tokens, "cost.plan.gpu_hours_per_trillion_tokens");
  } else if (p.tokens_per_gpu_s > 0) {
    from_rate(p.tokens_per_gpu_s, "cost.plan.tokens_per_gpu_s");
  } else {
    from_mfu(p.mfu, "cost.plan.mfu");
  }
}

}  // namespace

Plan make_plan(const config::RunConfig& c, const PlanOptions& options) {
  Plan plan;
  plan.config = c.source;
  const config::DeviceSpec* device = config::find_device(c.cost.gpu);
  if (!device) throw std::invalid_argument("make_plan: cost.gpu '" + c.cost.gpu + "' unknown");
  plan.device = *device;
  // The trainer's rule for the peaks; a plan has no running ranks, so a CPU rank is counted
  // with one thread (cost.peak_tflops says otherwise).
  const DeviceRates rates = device_rates(c.cost, 1);
  plan.device.bf16_tflops = rates.peak_bf16_tflops;
  plan.device.fp8_tflops = rates.peak_fp8_tflops;
  plan.world = c.parallel.pp * c.parallel.dp;
  plan.flops = flops_per_token(c.model, c.train.seq_len);
  plan.memory = plan_memory(c);
  plan.device_memory_bytes = plan.device.memory_gb * 1e9;
  plan.fits = plan.device_memory_bytes <= 0 ||
              plan.memory.worst().total_bytes <= plan.device_memory_bytes;

  choose_tokens(c, options, plan);
  choose_throughput(c, options, plan);
  const double flops_per_s = plan.tokens_per_device_s * plan.flops.total;
  plan.mfu_bf16 = flops_per_s / (plan.device.bf16_tflops * 1e12);
  if (c.precision.compute == "fp8" && plan.device.fp8_tflops > 0) {
    plan.mfu_fp8 = flops_per_s / (plan.device.fp8_tflops * 1e12);
  }
  plan.device_hours = plan.tokens / plan.tokens_per_device_s / kSecondsPerHour;
  plan.wall_days = plan.device_hours / static_cast<double>(plan.world) / 24.0;
  plan.usd = plan.device_hours * c.cost.usd_per_gpu_hour;
  return plan;
}

CostRow planned_row(const config::RunConfig& c, const Plan& plan) {
  CostRow row;
  row.name = c.run.name;
  row.phase = c.cost.phase;
  row.planned = true;
  row.source = plan.config;
  row.gpu = plan.device.name;
  row.device_kind = plan.device.kind;
  row.world = plan.world;
  row.peak_bf16_tflops = plan.device.bf16_tflops;
  row.peak_fp8_tflops = plan.device.fp8_tflops;
  row.compute = c.precision.compute;
  row.usd_per_gpu_hour = c.cost.usd_per_gpu_hour;
  row.flops_per_token = plan.flops.total;
  row.active_params = plan.flops.active_params;
  row.device_hours = plan.device_hours;
  row.tokens = plan.tokens;
  row.tokens_per_device_hour = plan.tokens_per_device_s * kSecondsPerHour;
  row.device_hours_per_trillion_tokens = plan.device_hours / (plan.tokens / kTrillion);
  row.mfu_bf16 = plan.mfu_bf16;
  row.mfu_fp8 = plan.mfu_fp8;
  row.usd = plan.usd;
  row.h800_factor = plan.device.bf16_tflops / h800_peak_bf16_tflops();
  row.h800_equivalent_hours = plan.device_hours * row.h800_factor;
  row.token_budget = plan.tokens;
  row.projected_device_hours = plan.device_hours;
  row.projected_usd = plan.usd;
  return row;
}

std::vector<ReferenceLine> reference_lines(double usd_per_gpu_hour, const std::string& phase) {
  std::vector<ReferenceLine> lines;
  for (const ReferenceRun& run : reference_runs()) {
    const config::DeviceSpec* device = config::find_device(run.gpu);
    const double factor = device ? device->bf16_tflops / h800_peak_bf16_tflops() : 1.0;
    double pretraining_hours = run.gpu_hours;
    std::string basis = "all phases";
    for (const ReferencePhase& p : run.phases) {
      if (p.phase == "pretraining") {
        pretraining_hours = p.gpu_hours;
        basis = "pre-training";
      }
    }
    auto line = [&](const std::string& name, double hours) {
      return ReferenceLine{name, run.gpu, hours, hours * factor,
                           pretraining_hours / (run.tokens / kTrillion), basis,
                           hours * usd_per_gpu_hour};
    };
    lines.push_back(line(run.name, run.gpu_hours));
    for (const ReferencePhase& p : run.phases) {
      if (p.phase != phase) continue;
      ReferenceLine phase_line = line(run.name + " " + phase_title(p.phase), p.gpu_hours);
      if (p.phase != "pretraining") {  // the sources count pre-training tokens only
        phase_line.gpu_hours_per_trillion_tokens = 0;
        phase_line.per_trillion_basis = "no token count";
      }
      lines.push_back(phase_line);
    }
  }
  return lines;
}

void print_plan(const config::RunConfig& c, const Plan& plan, std::ostream& out) {
  const FlopsPerToken& f = plan.flops;
  const double embedding = f.active_params - f.matmul_params;
  out << "plan: " << plan.config << " (run " << c.run.name << ", phase " << c.cost.phase
      << "); a prediction: nothing is trained\n\n";

  out << "parameters\n";
  const bool moe = c.model.layers > c.model.dense_layers;
  print_table(
      {{"total", format_count(f.total_params)},
       {"active per token", format_count(f.active_params),
        moe ? "(routed experts: top-" + std::to_string(c.model.moe.top_k) + " of " +
                  std::to_string(c.model.moe.routed_experts) + "; shared experts: " +
                  std::to_string(c.model.moe.shared_experts) + ")"
            : "(dense: every parameter)"},
       {"matmul-active", format_count(f.matmul_params),
        "(active minus the " + format_count(embedding) + "-parameter embedding table)"}},
      out);

  out << "\nFLOPs per token (training: forward + backward)\n  " << f.formula << "\n";

  const config::DeviceSpec& d = plan.device;
  out << "\nlayout\n";
  out << "  " << plan.world << " x " << d.name << " = pp " << c.parallel.pp
      << (c.parallel.pp > 1 ? " (" + c.parallel.schedule + ")" : "") << " x dp " << c.parallel.dp
      << "; ep " << c.parallel.ep << (c.parallel.zero ? "; ZeRO-1" : "") << "; compute "
      << c.precision.compute << ", optimizer state " << c.precision.optimizer_state << "\n";
  const std::string overridden = c.cost.peak_tflops > 0 ? " (cost.peak_tflops)" : "";
  if (d.kind == "cpu") {
    out << "  " << d.name << " peak: " << significant(d.bf16_tflops, 6) << " TFLOP/s"
        << overridden << " (FP32, nominal, per core); memory: the host's\n";
  } else {
    out << "  " << d.name << " dense peaks: BF16 " << significant(d.bf16_tflops, 6)
        << " TFLOP/s" << overridden << ", FP8 "
        << (d.fp8_tflops > 0 ? significant(d.fp8_tflops, 6) + " TFLOP/s" : "none")
        << "; memory " << significant(d.memory_gb, 4) << " GB\n";
  }
  out << "  source: " << d.source << "\n";
  if (d.kind == "cpu") {
    out << "  (a CPU rank's peak is per core; the plan assumes one thread per rank: set "
           "cost.peak_tflops to your rank's peak)\n";
  }

  const RankMemory& rank = plan.memory.worst();
  out << "\nmemory per rank: pipeline rank " << rank.rank << " (the most loaded of "
      << plan.memory.ranks.size() << "), holding " << rank.holds << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const MemoryComponent& m : rank.components) {
    rows.push_back({m.name, format_si(m.bytes, "B"), m.precision + ": " + m.detail});
  }
  rows.push_back({"total", format_si(rank.total_bytes, "B")});
  print_table(rows, out);
  if (plan.device_memory_bytes <= 0) {
    out << "  device memory: not tabled for " << d.name << "\n";
  } else if (plan.fits) {
    out << "  fits the " << d.name << "'s " << significant(d.memory_gb, 4) << " GB ("
        << percent(rank.total_bytes / plan.device_memory_bytes) << ")\n";
  } else {
    const auto largest = std::max_element(
        rank.components.begin(), rank.components.end(),
        [](const MemoryComponent& a, const MemoryComponent& b) { return a.bytes < b.bytes; });
    std::string hint;
    if (c.train.micro_batch > 1) hint += "a smaller train.micro_batch, ";
    hint += "more pipeline ranks (parallel.pp) or expert-parallel ranks (parallel.ep)";
    if (c.precision.compute != "fp8") hint += ", precision.compute: fp8";
    out << "WARNING: does not fit: " << format_si(rank.total_bytes, "B") << " on a "
        << significant(d.memory_gb, 4) << " GB " << d.name << "; the largest part is "
        << largest->name << " (" << format_si(largest->bytes, "B") << ")\n"
        << "HINT: " << hint << " (each micro-batch in flight keeps "
        << format_si(rank.per_micro_batch.total(), "B") << " of activations on this rank, "
        << rank.peak_in_flight << " at the peak)\n";
  }

  out << "\nprediction for " << format_count(plan.tokens) << " tokens (" << plan.tokens_source
      << ")\n";
  std::string mfu = percent(plan.mfu_bf16) +
                    (d.kind == "cpu" ? " of the nominal FP32 peak" : " of the BF16 dense peak");
  if (plan.mfu_fp8 > 0) mfu += "; " + percent(plan.mfu_fp8) + " of the FP8 dense peak";
  print_table({{"throughput", significant(plan.tokens_per_device_s, 4) +
                                  " tokens/s per device (" + plan.throughput_source + ")"},
               {"implied MFU", mfu},
               {"GPU-hours", format_hours(plan.device_hours) + " " + d.name +
                                 (d.kind == "cpu" ? " device-hours" : " GPU-hours")},
               {"wall time", duration(plan.wall_days) + " on " + std::to_string(plan.world) +
                                 " x " + d.name},
               {"cost", format_usd(plan.usd) + " at " + format_usd(c.cost.usd_per_gpu_hour) +
                            " per GPU-hour"}},
              out);

  const double h800 = h800_peak_bf16_tflops();
  out << "\nbeside the published runs (H800-equivalent hours = GPU-hours x the GPU's BF16 dense "
         "peak / H800's "
      << significant(h800, 6) << " TFLOP/s; $ at this config's "
      << format_usd(c.cost.usd_per_gpu_hour) << " per GPU-hour)\n";
  std::vector<std::vector<std::string>> table = {
      {"run", "GPU", "GPU-hours", "H800-eq. hours", "GPU-hours per 1T tokens", "$"},
      {"this plan", d.name, format_hours(plan.device_hours),
       format_hours(plan.device_hours * d.bf16_tflops / h800),
       format_hours(plan.device_hours / (plan.tokens / kTrillion)), format_usd(plan.usd)}};
  for (const ReferenceLine& r : reference_lines(c.cost.usd_per_gpu_hour, c.cost.phase)) {
    const std::string per_trillion =
        r.gpu_hours_per_trillion_tokens > 0 ? format_hours(r.gpu_hours_per_trillion_tokens) + " ("
                                                  + r.per_trillion_basis + ")"
                                            : "- (" + r.per_trillion_basis + ")";
    table.push_back({r.name, r.gpu, format_hours(r.gpu_hours),
                     format_hours(r.h800_equivalent_hours), per_trillion, format_usd(r.usd)});
  }
  print_table(table, out);
  out << "  sources:";
  for (const ReferenceRun& run : reference_runs()) {
    out << "\n    " << run.name << ": " << run.source;
  }
  out << "\n";
}

}  // namespace baleine::cost
