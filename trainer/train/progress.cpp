#include "trainer/train/progress.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "trainer/config/json_text.h"
#include "trainer/cost/units.h"

namespace baleine::train {

namespace {
template <typename... Args>
std::string printf_string(const char* fmt, Args... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}
}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) {
    return printf_string("%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                         static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  }
  return printf_string("%lld:%02lld", static_cast<long long>(s / 60),
                       static_cast<long long>(s % 60));
}

std::string format_count(double value) {
  if (value >= 1e9) return printf_string("%.2fG", value / 1e9);
  if (value >= 1e6) return printf_string("%.2fM", value / 1e6);
  if (value >= 1e3) return printf_string("%.1fk", value / 1e3);
  return printf_string("%.0f", value);
}

std::string format_progress_line(const StepRecord& r) {
  const int width = static_cast<int>(std::to_string(r.total_steps).size());
  std::string line = printf_string("step %*lld/%lld | loss %.4f", width,
                                   static_cast<long long>(r.step),
                                   static_cast<long long>(r.total_steps), r.loss);
  if (r.has_val_loss) line += printf_string(" | val %.4f", r.val_loss);
  line += printf_string(" | lr %.2e | grad %.3f | %s tok/s", r.lr, r.grad_norm,
                        format_count(r.tokens_per_s).c_str());
  if (r.has_moe) line += printf_string(" | imbalance %.2f", r.expert_imbalance);
  if (r.has_cost) {
    line += printf_string(" | MFU %.2g%% bf16", 100 * r.mfu_bf16);
    if (r.mfu_fp8 > 0) line += printf_string(", %.2g%% fp8", 100 * r.mfu_fp8);
    line += " | " + cost::format_hours(r.device_hours) + " " + r.device_label + "-h | " +
            cost::format_usd(r.usd) + " of ~" + cost::format_usd(r.projected_usd);
  }
  line += " | " + format_duration(r.elapsed_s) + " elapsed | eta " + format_duration(r.eta_s);
  if (r.skipped) line += " | SKIPPED: " + r.skip_reason;
  return line;
}

namespace {
// [0.0123,0.0456]: seconds to 0.1 ms.
std::string json_array(const std::vector<double>& values) {
  std::string json = "[";
  for (size_t i = 0; i < values.size(); ++i) json += printf_string(i ? ",%.4f" : "%.4f", values[i]);
  return json + "]";
}
}  // namespace

// Losses and norms with every digit (a resumed run is compared with an uninterrupted one bit for
// bit); JSON has no NaN or infinity, so a non-finite value is null.
using config::json_number;

std::string format_metrics_json(const StepRecord& r) {
  std::string json = printf_string("{\"step\":%lld,\"loss\":", static_cast<long long>(r.step)) +
                     json_number(r.loss) + printf_string(",\"lr\":%.6e,\"grad_norm\":", r.lr) +
                     json_number(r.grad_norm) +
                     printf_string(",\"tokens\":%lld,\"tokens_per_s\":%.1f,\"step_s\":%.4f,"
                                   "\"elapsed_s\":%.3f",
                                   static_cast<long long>(r.tokens), r.tokens_per_s,
                                   r.step_seconds, r.elapsed_s);
  if (r.skipped) json += ",\"skipped\":\"" + r.skip_reason + "\"";
  if (r.has_val_loss) json += ",\"val_loss\":" + json_number(r.val_loss);
  if (r.has_cost) {
    json += printf_string(",\"mfu_bf16\":%.6g,\"mfu_fp8\":%.6g,\"device_hours\":%.9g,"
                          "\"usd\":%.9g,\"projected_usd\":%.9g",
                          r.mfu_bf16, r.mfu_fp8, r.device_hours, r.usd, r.projected_usd);
  }
  if (r.has_moe) {
    json += printf_string(",\"expert_imbalance\":%.4f,\"aux_loss\":%.6e", r.expert_imbalance,
                          r.aux_loss);
  }
  if (!r.expert_load.empty()) {
    json += ",\"expert_load\":[";
    for (size_t l = 0; l < r.expert_load.size(); ++l) {
      json += l ? ",[" : "[";
      for (size_t e = 0; e < r.expert_load[l].size(); ++e) {
        json += (e ? "," : "") + std::to_string(r.expert_load[l][e]);
      }
      json += "]";
    }
    json += "]";
  }
  json += printf_string(
      ",\"activation_cache_bytes\":%lld,\"other_activation_bytes\":%lld",
      static_cast<long long>(r.activation_cache_bytes),
      static_cast<long long>(r.other_activation_bytes));
  if (r.has_moe) {
    json += printf_string(",\"dispatch_bytes\":%lld,\"combine_bytes\":%lld",
                          static_cast<long long>(r.dispatch_bytes),
                          static_cast<long long>(r.combine_bytes));
  }
  if (!r.pipeline_busy_s.empty()) {
    json += ",\"pipeline_busy_s\":" + json_array(r.pipeline_busy_s);
    json += ",\"pipeline_bubble_s\":" + json_array(r.pipeline_bubble_s);
  }
  if (!r.dispatch_rows_per_rank.empty()) {
    json += ",\"dispatch_rows_per_rank\":[";
    for (size_t i = 0; i < r.dispatch_rows_per_rank.size(); ++i) {
      json += (i ? "," : "") + std::to_string(r.dispatch_rows_per_rank[i]);
    }
    json += "]";
  }
  return json + "}";
}

std::string format_memory_line(const StepRecord& r, const std::string& compute) {
  const auto mb = [](int64_t bytes) { return printf_string("%.2f MB", bytes / 1e6); };
  std::string line = "memory per step (all ranks, Linears in " + compute +
                     "): Linear activation cache " + mb(r.activation_cache_bytes) +
                     ", other saved activations " + mb(r.other_activation_bytes);
  if (r.has_moe) {
    line += "; EP dispatch " + mb(r.dispatch_bytes) + ", combine " + mb(r.combine_bytes);
  }
  return line;
}

std::string format_expert_load_json(int64_t step, const std::vector<ExpertLoadRecord>& layers) {
  std::string json = "{\"step\":" + std::to_string(step) + ",\"layers\":[";
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    json += (i ? ",{" : "{") + printf_string("\"layer\":%lld,\"imbalance\":%.4f,\"load\":[",
                                             static_cast<long long>(l.layer), l.imbalance);
    for (size_t e = 0; e < l.load.size(); ++e) {
      json += (e ? "," : "") + std::to_string(l.load[e]);
    }
    json += "],\"bias\":[";
    for (size_t e = 0; e < l.bias.size(); ++e) {
      json += (e ? "," : "") + printf_string("%.6g", static_cast<double>(l.bias[e]));
    }
    json += "]}";
  }
  return json + "]}";
}

}  // namespace baleine::train
