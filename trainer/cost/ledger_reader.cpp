// read_ledger: RUN_DIR/ledger.jsonl back into restarts, with lost work worked out. Lines are
// JSON objects parsed with yaml-cpp (JSON is YAML 1.2 flow syntax). A bad line is reported with
// its line number and skipped; the rest of the ledger still counts.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "trainer/cost/ledger.h"
#include "trainer/errors.h"

namespace baleine::cost {

namespace {

// Thrown while reading one line; read_ledger turns it into a LedgerProblem and goes on.
struct BadLine {
  std::string message;
};

std::string shown(const std::string& text) {
  constexpr size_t kMaxShown = 40;
  return "\"" + (text.size() > kMaxShown ? text.substr(0, kMaxShown) + "..." : text) + "\"";
}

// A scalar written without quotes (yaml-cpp tags it "?"; quoted ones get "!"): JSON's numbers.
bool is_plain_scalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

// std::from_chars, unlike yaml-cpp's stream conversion, accepts neither "0x10" nor "010" as 16
// or 8, ignores the locale, and must consume the whole text.
template <typename T>
bool parse_number(const std::string& text, T* value) {
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, *value);
  return result.ec == std::errc() && result.ptr == end;
}

// The fields of one record, each read with its JSON type checked.
class RecordFields {
 public:
  RecordFields(const YAML::Node& object, std::string type)
      : object_(object), type_(std::move(type)) {}

  int64_t integer(const char* key, bool required, int64_t fallback = 0) const {
    const YAML::Node node = object_[key];
    if (!present(node, key, required)) return fallback;
    int64_t value = 0;
    if (!is_plain_scalar(node) || !parse_number(node.Scalar(), &value)) {
      throw mistyped(key, node, "an integer");
    }
    return value;
  }

  double number(const char* key, bool required, double fallback = 0) const {
    const YAML::Node node = object_[key];
    if (!present(node, key, required)) return fallback;
    return number_of(node, key);
  }

  std::string text(const char* key, bool required) const {
    const YAML::Node node = object_[key];
    if (!present(node, key, required)) return "";
    if (!node.IsScalar() || node.Tag() != "!") throw mistyped(key, node, "a string");
    return node.Scalar();
  }

  // {"startup":..,"compute":..,...}: every segment present (a missing one would make the
  // totals silently smaller) and nothing unknown (its time would belong to no segment).
  SegmentSeconds segments(const char* key) const {
    const YAML::Node node = object_[key];
    present(node, key, true);
    if (!node.IsMap()) throw mistyped(key, node, "an object of segment seconds");
    SegmentSeconds seconds{};
    std::array<bool, kSegmentCount> seen{};
    for (const auto& entry : node) {
      const std::string name = entry.first.Scalar();
      Segment segment;
      if (!segment_from_key(name, &segment)) {
        throw BadLine{type_ + " record: unknown segment " + shown(name) + " in \"" + key + "\""};
      }
      const std::string path = std::string(key) + "." + name;
      seconds[static_cast<size_t>(segment)] = number_of(entry.second, path.c_str());
      seen[static_cast<size_t>(segment)] = true;
    }
    for (size_t i = 0; i < kSegmentCount; ++i) {
      if (!seen[i]) {
        throw BadLine{type_ + " record: \"" + key + "\" lacks the segment \"" +
                      segment_key(static_cast<Segment>(i)) + "\""};
      }
    }
    return seconds;
  }

 private:
  bool present(const YAML::Node& node, const char* key, bool required) const {
    if (node.IsDefined()) return true;
    if (required) throw BadLine{type_ + " record: missing required field \"" + key + "\""};
    return false;
  }

  double number_of(const YAML::Node& node, const char* key) const {
    double value = 0;
    if (!is_plain_scalar(node) || !parse_number(node.Scalar(), &value) || !std::isfinite(value)) {
      throw mistyped(key, node, "a finite number");
    }
    return value;
  }

  BadLine mistyped(const char* key, const YAML::Node& node, const char* expected) const {
    std::string got;
    if (node.IsNull()) {
      got = "null";
    } else if (node.IsScalar()) {
      got = node.Tag() == "!" ? "the string " + shown(node.Scalar()) : node.Scalar();
    } else {
      got = node.IsMap() ? "an object" : "an array";
    }
    return BadLine{type_ + " record: field \"" + key + "\" should be " + expected + ", got " +
                   got};
  }

  const YAML::Node& object_;
  std::string type_;
};

LedgerStart parse_start(const RecordFields& f) {
  LedgerStart s;
  // Required: what the totals and the invariant need. The rest describe the run; they default
  // when absent so that a ledger from a build that wrote fewer fields still reads.
  s.restart = f.integer("restart", true);
  s.unix_time = f.number("unix_time", true);
  s.world = f.integer("world", true);
  s.run_name = f.text("run_name", false);
  s.config = f.text("config", false);
  s.phase = f.text("phase", false);
  s.compute = f.text("compute", false);
  s.gpu = f.text("gpu", false);
  s.device_kind = f.text("device_kind", false);
  s.peak_bf16_tflops = f.number("peak_bf16_tflops", false);
  s.peak_fp8_tflops = f.number("peak_fp8_tflops", false);
  s.usd_per_gpu_hour = f.number("usd_per_gpu_hour", false);
  s.flops_per_token = f.number("flops_per_token", false);
  s.active_params = f.number("active_params", false);
  s.tokens_per_step = f.integer("tokens_per_step", false);
  s.total_steps = f.integer("total_steps", false);
  s.start_step = f.integer("start_step", false);
  s.token_budget = f.number("token_budget", false);
  if (s.restart < 0) throw BadLine{"start record: restart " + std::to_string(s.restart) + " < 0"};
  if (s.world < 1) throw BadLine{"start record: world " + std::to_string(s.world) + " < 1"};
  return s;
}

LedgerTick parse_tick(const RecordFields& f, const std::string& type) {
  LedgerTick t;
  t.type = type;
  t.restart = f.integer("restart", true);
  t.unix_time = f.number("unix_time", false);
  t.wall_s = f.number("wall_s", true);
  t.step = f.integer("step", true);
  t.tokens = f.integer("tokens", true);
  t.segments = f.segments("segments");
  if (type == "end") {
    t.status = f.text("status", true);
    if (t.status != "completed" && t.status != "stopped" && t.status != "failed") {
      throw BadLine{"end record: status " + shown(t.status) +
                    " is not \"completed\", \"stopped\" or \"failed\""};
    }
  } else {
    t.status = f.text("status", false);
  }
  return t;
}

LedgerLost parse_lost(const RecordFields& f) {
  LedgerLost l;
  l.restart = f.integer("restart", true);
  l.found_by = f.integer("found_by", true);
  l.unrecorded_device_s = f.number("unrecorded_device_s", false);
  l.estimated_end_unix_time = f.number("estimated_end_unix_time", false);
  if (l.unrecorded_device_s < 0) {
    throw BadLine{"lost record: unrecorded_device_s " + std::to_string(l.unrecorded_device_s) +
                  " < 0"};
  }
  return l;
}

// The ledger so far, with the line each restart's records came from (for messages).
class LedgerBuilder {
 public:
  explicit LedgerBuilder(LedgerContents* contents) : contents_(contents) {}

  void add(const LedgerStart& start, int64_t line) {
    if (!restarts().empty()) {
      const RestartRecord& latest = restarts().back();
      const int64_t latest_line = lines_.back().start;
      if (start.restart == latest.start.restart) {
        throw BadLine{"restart " + std::to_string(start.restart) + " already started at line " +
                      std::to_string(latest_line)};
      }
      if (start.restart < latest.start.restart) {
        throw BadLine{"start record for restart " + std::to_string(start.restart) +
                      " after restart " + std::to_string(latest.start.restart) +
                      " started at line " + std::to_string(latest_line) +
                      ": restart numbers go backwards"};
      }
    }
    RestartRecord record;
    record.start = start;
    restarts().push_back(record);
    lines_.push_back({line, 0, 0});
    index_[start.restart] = restarts().size() - 1;
  }

  void add(const LedgerTick& tick, int64_t line) {
    const size_t i = find(tick.restart, tick.type);
    if (i + 1 != restarts().size()) {
      throw BadLine{"a " + tick.type + " record for restart " + std::to_string(tick.restart) +
                    " after restart " + std::to_string(restarts().back().start.restart) +
                    " started at line " + std::to_string(lines_.back().start) +
                    ": restart numbers go backwards"};
    }
    RestartRecord& record = restarts()[i];
    if (record.ended) {
      throw BadLine{"a " + tick.type + " record for restart " + std::to_string(tick.restart) +
                    " after its end record at line " + std::to_string(lines_[i].end)};
    }
    if (record.has_tick) check_cumulative(record.last, tick, lines_[i].last_tick);
    record.has_tick = true;
    record.last = tick;
    lines_[i].last_tick = line;
    if (tick.type == "checkpoint") {
      record.has_checkpoint = true;
      record.last_checkpoint = tick;
    } else if (tick.type == "end") {
      record.ended = true;
      lines_[i].end = line;
    }
  }

  void add(const LedgerLost& lost, int64_t line) {
    const size_t i = find(lost.restart, "lost");
    RestartRecord& record = restarts()[i];
    if (lost.found_by <= lost.restart) {
      throw BadLine{"lost record: restart " + std::to_string(lost.restart) +
                    " cannot be found crashed by restart " + std::to_string(lost.found_by) +
                    " (found_by must be a later restart)"};
    }
    if (record.ended) {
      throw BadLine{"lost record for restart " + std::to_string(lost.restart) +
                    ", which has an end record at line " + std::to_string(lines_[i].end) +
                    ": it did not crash"};
    }
    if (record.has_lost) {
      throw BadLine{"restart " + std::to_string(lost.restart) +
                    " already has a lost record at line " + std::to_string(lines_[i].lost)};
    }
    record.has_lost = true;
    record.lost = lost;
    lines_[i].lost = line;
  }

 private:
  struct RecordLines {
    int64_t start = 0, last_tick = 0, end = 0, lost = 0;
  };

  std::vector<RestartRecord>& restarts() { return contents_->restarts; }

  size_t find(int64_t restart, const std::string& type) const {
    const auto it = index_.find(restart);
    if (it == index_.end()) {
      throw BadLine{"a " + type + " record for restart " + std::to_string(restart) +
                    ", which has no start record"};
    }
    return it->second;
  }

  // Ticks are cumulative within a restart: nothing they count may shrink. Rank 0 sums the same
  // ranks in the same order each time, and rounding is monotonic, so an exact comparison would
  // do; the 1e-9 relative slack only forgives a reduction whose order changes between steps.
  static void check_cumulative(const LedgerTick& before, const LedgerTick& now,
                               int64_t before_line) {
    const std::string since = " (line " + std::to_string(before_line) + ")";
    const auto decreases = [](double after, double previous) {
      return after < previous - 1e-9 * std::max(1.0, std::fabs(previous));
    };
    if (now.step < before.step) {
      throw BadLine{now.type + " record: cumulative step decreases from " +
                    std::to_string(before.step) + since + " to " + std::to_string(now.step)};
    }
    if (now.tokens < before.tokens) {
      throw BadLine{now.type + " record: cumulative tokens decrease from " +
                    std::to_string(before.tokens) + since + " to " + std::to_string(now.tokens)};
    }
    if (decreases(now.wall_s, before.wall_s)) {
      throw BadLine{now.type + " record: wall_s decreases from " + std::to_string(before.wall_s) +
                    since + " to " + std::to_string(now.wall_s)};
    }
    for (size_t s = 0; s < kSegmentCount; ++s) {
      if (decreases(now.segments[s], before.segments[s])) {
        throw BadLine{now.type + " record: cumulative segment \"" +
                      segment_key(static_cast<Segment>(s)) + "\" decreases from " +
                      std::to_string(before.segments[s]) + since + " to " +
                      std::to_string(now.segments[s])};
      }
    }
  }

  LedgerContents* contents_;
  std::vector<RecordLines> lines_;  // parallel to contents_->restarts
  std::map<int64_t, size_t> index_;
};

// One line into the builder; throws BadLine.
void read_line(const std::string& line, bool unterminated, int64_t number,
               LedgerBuilder* builder) {
  YAML::Node loaded;
  std::string parse_error;
  try {
    loaded = YAML::Load(line);
  } catch (const YAML::Exception& e) {
    parse_error = e.msg;  // without yaml-cpp's "line 1, column N", which is not the ledger's line
  }
  // Read through a const node: a non-const operator[] may add the keys it looks up.
  const YAML::Node& object = loaded;
  if (parse_error.empty() && !object.IsMap()) parse_error = "not an object";
  if (!parse_error.empty()) {
    // Each record is one write() ending in '\n': a last line without it, and unparsable, is
    // what a process killed mid-write leaves.
    if (unterminated) {
      throw BadLine{"truncated: the last line has no newline and is not a complete JSON object "
                    "(the trainer was killed while writing it); its accounting is lost"};
    }
    throw BadLine{"not a JSON object (" + parse_error + ")"};
  }
  const YAML::Node type_node = object["type"];
  if (!type_node.IsDefined()) throw BadLine{"record without a \"type\""};
  if (!type_node.IsScalar() || type_node.Tag() != "!") {
    throw BadLine{"\"type\" should be a string"};
  }
  const std::string type = type_node.Scalar();
  const RecordFields fields(object, type);
  if (type == "start") {
    builder->add(parse_start(fields), number);
  } else if (type == "progress" || type == "checkpoint" || type == "end") {
    builder->add(parse_tick(fields, type), number);
  } else if (type == "lost") {
    builder->add(parse_lost(fields), number);
  } else {
    throw BadLine{"unknown record type " + shown(type) +
                  " (expected start, progress, checkpoint, end or lost)"};
  }
}

// The derived fields documented in ledger.h.
void derive(RestartRecord* r) {
  r->wall_s = r->has_tick ? r->last.wall_s : 0.0;
  r->last_step = r->has_tick ? r->last.step : r->start.start_step;
  if (r->ended) {
    r->outcome = r->last.status;
    r->segments = r->last.segments;
    r->useful_tokens = r->last.tokens;
    return;
  }
  // No end record: the work after the last checkpoint is gone (a resume restarts from that
  // checkpoint), whichever segment it was recorded in. Keep each segment as it stood at the
  // checkpoint and move the difference to lost work, so the total is unchanged.
  const SegmentSeconds at_checkpoint =
      r->has_checkpoint ? r->last_checkpoint.segments : SegmentSeconds{};
  const SegmentSeconds recorded = r->has_tick ? r->last.segments : SegmentSeconds{};
  const size_t lost = static_cast<size_t>(Segment::kLostWork);
  r->segments = at_checkpoint;
  r->segments[lost] = recorded[lost];
  for (size_t s = 0; s < kSegmentCount; ++s) {
    if (s != lost) r->segments[lost] += recorded[s] - at_checkpoint[s];
  }
  r->useful_tokens = r->has_checkpoint ? r->last_checkpoint.tokens : 0;
  if (r->has_lost) {
    // The time between the last record and the crash was never recorded, but it was spent on
    // every device; it is lost work too, and stretches the wall time so that the segments
    // still sum to world x wall_s.
    r->segments[lost] += r->lost.unrecorded_device_s;
    r->wall_s += r->lost.unrecorded_device_s / static_cast<double>(r->start.world);
    r->outcome = "crashed (found by restart " + std::to_string(r->lost.found_by) + ")";
  } else {
    r->outcome = "no end record (still running, or crashed and not resumed)";
  }
}

}  // namespace

LedgerContents read_ledger(const std::string& path) {
  LedgerContents contents;
  std::error_code ignored;
  contents.path = std::filesystem::is_directory(path, ignored)
                      ? (std::filesystem::path(path) / "ledger.jsonl").string()
                      : path;
  std::ifstream file(contents.path, std::ios::binary);
  if (!file) {
    throw UserError(contents.path, "", std::string("cannot read the GPU-hour ledger: ") +
                                           std::strerror(errno),
                    "give a run directory written by `baleine train` (it holds ledger.jsonl) "
                    "or the path of a ledger.jsonl");
  }
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string text = buffer.str();

  LedgerBuilder builder(&contents);
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t newline = text.find('\n', begin);
    const bool unterminated = newline == std::string::npos;
    const size_t end = unterminated ? text.size() : newline;
    const std::string line = text.substr(begin, end - begin);
    begin = unterminated ? text.size() : newline + 1;
    const int64_t number = ++contents.lines;
    // A blank line carries no accounting; the writer never writes one.
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      read_line(line, unterminated, number, &builder);
    } catch (const BadLine& bad) {
      contents.problems.push_back({number, bad.message});
    }
  }
  for (RestartRecord& record : contents.restarts) derive(&record);
  return contents;
}

}  // namespace baleine::cost
