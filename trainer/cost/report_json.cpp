// cost-report.json: every field of the CostReport, written by hand (baleine has no JSON
// library) and read back with yaml-cpp (JSON is YAML 1.2 flow syntax), so reports of several
// phases can be merged by a later `baleine report`.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "trainer/config/json_text.h"
#include "trainer/cost/report.h"
#include "trainer/errors.h"

namespace baleine::cost {

namespace {

constexpr const char* kFormat = "baleine cost report";
constexpr int kVersion = 1;

std::string quoted(const std::string& s) { return config::json_string(s); }

// 17 significant digits: every double reads back to the same bits. JSON has no NaN or
// infinity; they are written as null (and read back as NaN) rather than as invalid JSON.
std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string number(int64_t v) { return std::to_string(v); }

// Builds one JSON object: {"key": value, ...}.
class Object {
 public:
  Object& add(const std::string& key, const std::string& raw_json) {
    text_ += (text_.empty() ? "" : ", ") + quoted(key) + ": " + raw_json;
    return *this;
  }
  Object& text(const std::string& key, const std::string& v) { return add(key, quoted(v)); }
  Object& num(const std::string& key, double v) { return add(key, number(v)); }
  Object& integer(const std::string& key, int64_t v) { return add(key, number(v)); }
  Object& flag(const std::string& key, bool v) { return add(key, v ? "true" : "false"); }
  std::string str() const { return "{" + text_ + "}"; }

 private:
  std::string text_;
};

std::string segments_json(const SegmentSeconds& hours) {
  Object o;
  for (size_t s = 0; s < kSegmentCount; ++s) o.num(segment_key(static_cast<Segment>(s)), hours[s]);
  return o.str();
}

std::string restart_json(const RestartCost& r) {
  return Object()
      .integer("restart", r.restart)
      .text("outcome", r.outcome)
      .num("device_hours", r.device_hours)
      .num("wall_hours", r.wall_hours)
      .integer("world", r.world)
      .integer("useful_tokens", r.useful_tokens)
      .integer("last_step", r.last_step)
      .add("segment_hours", segments_json(r.segment_hours))
      .str();
}

std::string row_json(const CostRow& r, const std::string& indent) {
  std::string restarts = "[";
  for (size_t i = 0; i < r.restarts.size(); ++i) {
    restarts += (i ? ",\n" : "\n") + indent + "    " + restart_json(r.restarts[i]);
  }
  restarts += r.restarts.empty() ? "]" : "\n" + indent + "  ]";
  Object o;
  o.text("name", r.name).text("phase", r.phase).flag("planned", r.planned).text("source", r.source);
  o.text("gpu", r.gpu).text("device_kind", r.device_kind).integer("world", r.world);
  o.num("peak_bf16_tflops", r.peak_bf16_tflops).num("peak_fp8_tflops", r.peak_fp8_tflops);
  o.text("compute", r.compute).num("usd_per_gpu_hour", r.usd_per_gpu_hour);
  o.num("flops_per_token", r.flops_per_token).num("active_params", r.active_params);
  o.num("device_hours", r.device_hours).add("segment_hours", segments_json(r.segment_hours));
  o.num("tokens", r.tokens).num("tokens_per_device_hour", r.tokens_per_device_hour);
  o.num("device_hours_per_trillion_tokens", r.device_hours_per_trillion_tokens);
  o.num("mfu_bf16", r.mfu_bf16).num("mfu_fp8", r.mfu_fp8).num("usd", r.usd);
  o.num("h800_factor", r.h800_factor).num("h800_equivalent_hours", r.h800_equivalent_hours);
  o.num("token_budget", r.token_budget).num("projected_device_hours", r.projected_device_hours);
  o.num("projected_usd", r.projected_usd);
  o.add("restarts", restarts);
  return o.str();
}

// ---- reading ------------------------------------------------------------------------------

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  UserError error(const std::string& key, const std::string& what) const {
    return UserError(path_, key, what,
                     "pass a cost-report.json written by `baleine report` (or `baleine plan`), "
                     "or the run directory itself");
  }

  YAML::Node child(const YAML::Node& node, const std::string& key, const std::string& where) const {
    const YAML::Node c = node[key];
    if (!c.IsDefined()) throw error(where + key, "missing");
    return c;
  }

  double num(const YAML::Node& node, const std::string& key, const std::string& where) const {
    const YAML::Node c = child(node, key, where);
    if (c.IsNull()) return std::numeric_limits<double>::quiet_NaN();
    try {
      return c.as<double>();
    } catch (const YAML::Exception&) {
      throw error(where + key, "not a number");
    }
  }

  int64_t integer(const YAML::Node& node, const std::string& key, const std::string& where) const {
    try {
      return child(node, key, where).as<int64_t>();
    } catch (const YAML::Exception&) {
      throw error(where + key, "not an integer");
    }
  }

  std::string text(const YAML::Node& node, const std::string& key, const std::string& where) const {
    const YAML::Node c = child(node, key, where);
    if (!c.IsScalar()) throw error(where + key, "not a string");
    return c.as<std::string>();
  }

  bool flag(const YAML::Node& node, const std::string& key, const std::string& where) const {
    try {
      return child(node, key, where).as<bool>();
    } catch (const YAML::Exception&) {
      throw error(where + key, "not true or false");
    }
  }

  YAML::Node sequence(const YAML::Node& node, const std::string& key,
                      const std::string& where) const {
    const YAML::Node c = child(node, key, where);
    if (!c.IsSequence()) throw error(where + key, "not a list");
    return c;
  }

  SegmentSeconds segments(const YAML::Node& node, const std::string& key,
                          const std::string& where) const {
    const YAML::Node c = child(node, key, where);
    if (!c.IsMap()) throw error(where + key, "not an object of segments");
    SegmentSeconds hours{};
    for (size_t s = 0; s < kSegmentCount; ++s) {
      hours[s] = num(c, segment_key(static_cast<Segment>(s)), where + key + ".");
    }
    return hours;
  }

  RestartCost restart(const YAML::Node& node, const std::string& where) const {
    if (!node.IsMap()) throw error(where, "not an object");
    const std::string w = where + ".";
    RestartCost r;
    r.restart = integer(node, "restart", w);
    r.outcome = text(node, "outcome", w);
    r.device_hours = num(node, "device_hours", w);
    r.wall_hours = num(node, "wall_hours", w);
    r.world = integer(node, "world", w);
    r.useful_tokens = integer(node, "useful_tokens", w);
    r.last_step = integer(node, "last_step", w);
    r.segment_hours = segments(node, "segment_hours", w);
    return r;
  }

  CostRow row(const YAML::Node& node, const std::string& where) const {
    if (!node.IsMap()) throw error(where, "not an object");
    const std::string w = where + ".";
    CostRow r;
    r.name = text(node, "name", w);
    r.phase = text(node, "phase", w);
    r.planned = flag(node, "planned", w);
    r.source = text(node, "source", w);
    r.gpu = text(node, "gpu", w);
    r.device_kind = text(node, "device_kind", w);
    r.world = integer(node, "world", w);
    r.peak_bf16_tflops = num(node, "peak_bf16_tflops", w);
    r.peak_fp8_tflops = num(node, "peak_fp8_tflops", w);
    r.compute = text(node, "compute", w);
    r.usd_per_gpu_hour = num(node, "usd_per_gpu_hour", w);
    r.flops_per_token = num(node, "flops_per_token", w);
    r.active_params = num(node, "active_params", w);
    r.device_hours = num(node, "device_hours", w);
    r.segment_hours = segments(node, "segment_hours", w);
    r.tokens = num(node, "tokens", w);
    r.tokens_per_device_hour = num(node, "tokens_per_device_hour", w);
    r.device_hours_per_trillion_tokens = num(node, "device_hours_per_trillion_tokens", w);
    r.mfu_bf16 = num(node, "mfu_bf16", w);
    r.mfu_fp8 = num(node, "mfu_fp8", w);
    r.usd = num(node, "usd", w);
    r.h800_factor = num(node, "h800_factor", w);
    r.h800_equivalent_hours = num(node, "h800_equivalent_hours", w);
    r.token_budget = num(node, "token_budget", w);
    r.projected_device_hours = num(node, "projected_device_hours", w);
    r.projected_usd = num(node, "projected_usd", w);
    const YAML::Node restarts = sequence(node, "restarts", w);
    for (size_t i = 0; i < restarts.size(); ++i) {
      r.restarts.push_back(restart(restarts[i], w + "restarts[" + std::to_string(i) + "]"));
    }
    return r;
  }

 private:
  std::string path_;
};

}  // namespace

std::string report_json(const CostReport& report) {
  std::string json = "{\n";
  json += "  \"format\": " + quoted(kFormat) + ",\n";
  json += "  \"version\": " + std::to_string(kVersion) + ",\n";
  json += "  \"normalisation\": " + quoted(report.normalisation) + ",\n";
  json += "  \"h800_peak_bf16_tflops\": " + number(h800_peak_bf16_tflops()) + ",\n";
  json += "  \"rows\": [";
  for (size_t i = 0; i < report.rows.size(); ++i) {
    json += (i ? ",\n    " : "\n    ") + row_json(report.rows[i], "    ");
  }
  json += report.rows.empty() ? "],\n" : "\n  ],\n";
  json += "  \"total\": " + row_json(report.total, "  ") + ",\n";
  json += "  \"problems\": [";
  for (size_t i = 0; i < report.problems.size(); ++i) {
    const std::string file = i < report.problem_files.size() ? report.problem_files[i] : "";
    json += (i ? ",\n    " : "\n    ") + Object()
                                             .text("file", file)
                                             .integer("line", report.problems[i].line)
                                             .text("message", report.problems[i].message)
                                             .str();
  }
  json += report.problems.empty() ? "],\n" : "\n  ],\n";
  // The published runs as this report compared them (for readers; not read back).
  json += "  \"references\": [";
  const auto refs = reference_comparisons(report.total.usd_per_gpu_hour);
  for (size_t i = 0; i < refs.size(); ++i) {
    const ReferenceComparison& c = refs[i];
    json += (i ? ",\n    " : "\n    ") +
            Object()
                .text("name", c.name)
                .text("gpu", c.gpu)
                .num("gpu_hours", c.gpu_hours)
                .num("h800_factor", c.h800_factor)
                .num("h800_equivalent_hours", c.h800_equivalent_hours)
                .num("tokens", c.tokens)
                .num("h800_hours_per_trillion_tokens", c.h800_hours_per_trillion_tokens)
                .text("per_trillion_basis", c.per_trillion_basis)
                .num("usd_per_gpu_hour", c.usd_per_gpu_hour)
                .flag("priced_at_report_rate", c.priced_at_fallback)
                .num("usd", c.usd)
                .text("source", c.source)
                .str();
  }
  json += refs.empty() ? "]\n" : "\n  ]\n";
  return json + "}\n";
}

CostReport read_report_json(const std::string& path) {
  const Reader reader(path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw UserError(path, "", "cannot open the file",
                    "check the path: `baleine report RUN_DIR` writes RUN_DIR/cost-report.json");
  } catch (const YAML::Exception& e) {
    throw reader.error("", std::string("not valid JSON: ") + e.what());
  }
  if (!root.IsMap()) throw reader.error("", "not a JSON object");
  if (!root["format"].IsDefined() || !root["format"].IsScalar() ||
      root["format"].as<std::string>() != kFormat) {
    throw reader.error("format", std::string("not a cost report (expected \"") + kFormat + "\")");
  }
  const int64_t version = reader.integer(root, "version", "");
  if (version != kVersion) {
    throw reader.error("version", "version " + std::to_string(version) +
                                      " is not one this baleine reads (" +
                                      std::to_string(kVersion) + ")");
  }
  CostReport report;
  report.normalisation = reader.text(root, "normalisation", "");
  const YAML::Node rows = reader.sequence(root, "rows", "");
  for (size_t i = 0; i < rows.size(); ++i) {
    report.rows.push_back(reader.row(rows[i], "rows[" + std::to_string(i) + "]"));
  }
  report.total = reader.row(reader.child(root, "total", ""), "total");
  const YAML::Node problems = reader.sequence(root, "problems", "");
  for (size_t i = 0; i < problems.size(); ++i) {
    const std::string w = "problems[" + std::to_string(i) + "].";
    if (!problems[i].IsMap()) throw reader.error(w, "not an object");
    LedgerProblem p;
    p.line = reader.integer(problems[i], "line", w);
    p.message = reader.text(problems[i], "message", w);
    report.problems.push_back(p);
    report.problem_files.push_back(reader.text(problems[i], "file", w));
  }
  return report;
}

}  // namespace baleine::cost
