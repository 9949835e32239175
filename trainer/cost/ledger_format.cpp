// The ledger's JSON lines, written by hand (baleine has no JSON library). Keys are the structs'
// member names, "type" and "restart" first, so a line reads like its struct in ledger.h.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

#include "trainer/config/json_text.h"
#include "trainer/cost/ledger.h"

namespace baleine::cost {

namespace {

using config::json_number;
using config::json_string;

// Builds one object: {"type":...,"restart":R,"key":value,...}.
class JsonObject {
 public:
  JsonObject(const std::string& type, int64_t restart) {
    text_ = "{\"type\":" + json_string(type) + ",\"restart\":" + json_number(restart);
  }
  void add(const char* key, double value) { add_raw(key, json_number(value)); }
  void add(const char* key, int64_t value) { add_raw(key, json_number(value)); }
  void add(const char* key, const std::string& value) { add_raw(key, json_string(value)); }
  void add(const char* key, const SegmentSeconds& segments) {
    std::string nested = "{";
    for (size_t i = 0; i < kSegmentCount; ++i) {
      if (i) nested += ",";
      nested += json_string(segment_key(static_cast<Segment>(i))) + ":" +
                json_number(segments[i]);
    }
    add_raw(key, nested + "}");
  }
  std::string finish() const { return text_ + "}"; }

 private:
  void add_raw(const char* key, const std::string& value) {
    text_ += "," + json_string(key) + ":" + value;
  }
  std::string text_;
};

}  // namespace

std::string format_ledger_json(const LedgerStart& start) {
  JsonObject json("start", start.restart);
  json.add("unix_time", start.unix_time);
  json.add("world", start.world);
  json.add("run_name", start.run_name);
  json.add("config", start.config);
  json.add("phase", start.phase);
  json.add("compute", start.compute);
  json.add("gpu", start.gpu);
  json.add("device_kind", start.device_kind);
  json.add("peak_bf16_tflops", start.peak_bf16_tflops);
  json.add("peak_fp8_tflops", start.peak_fp8_tflops);
  json.add("usd_per_gpu_hour", start.usd_per_gpu_hour);
  json.add("flops_per_token", start.flops_per_token);
  json.add("active_params", start.active_params);
  json.add("tokens_per_step", start.tokens_per_step);
  json.add("total_steps", start.total_steps);
  json.add("start_step", start.start_step);
  json.add("token_budget", start.token_budget);
  return json.finish();
}

std::string format_ledger_json(const LedgerTick& tick) {
  JsonObject json(tick.type, tick.restart);
  json.add("unix_time", tick.unix_time);
  json.add("wall_s", tick.wall_s);
  json.add("step", tick.step);
  json.add("tokens", tick.tokens);
  json.add("segments", tick.segments);
  // Only an end record has a status; an empty one on progress lines would be noise.
  if (tick.type == "end" || !tick.status.empty()) json.add("status", tick.status);
  return json.finish();
}

std::string format_ledger_json(const LedgerLost& lost) {
  JsonObject json("lost", lost.restart);
  json.add("found_by", lost.found_by);
  json.add("unrecorded_device_s", lost.unrecorded_device_s);
  json.add("estimated_end_unix_time", lost.estimated_end_unix_time);
  return json.finish();
}

}  // namespace baleine::cost
