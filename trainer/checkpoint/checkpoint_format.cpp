// manifest.json: what a checkpoint holds, written last (checkpoint_format.h). One field per
// line at the top, one line per shard and per record, so a human can read and diff it.
#include "trainer/checkpoint/checkpoint_format.h"

#include <limits>
#include <string>

#include "trainer/checkpoint/manifest_json.h"
#include "trainer/errors.h"

namespace baleine::ckpt {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

int64_t dtype_bytes(DType t) { return t == DType::kBF16 ? 2 : 4; }

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kParam: return "param";
    case Kind::kAdamM: return "adam_m";
    case Kind::kAdamV: return "adam_v";
    case Kind::kExpertBias: return "expert_bias";
  }
  return "?";
}

namespace {

using detail::json_number;
using detail::json_string;

// The text of one JSON object, field by field: one field per line (the manifest's top level)
// or all on one line (its small nested objects).
class ObjectText {
 public:
  explicit ObjectText(bool multiline) : multiline_(multiline) {}
  void add(const char* key, const std::string& raw_value) {
    const char* separator = multiline_ ? "\n  " : (text_.empty() ? "" : " ");
    text_ +=
        (text_.empty() ? "" : ",") + std::string(separator) + json_string(key) + ": " + raw_value;
  }
  void add_int(const char* key, int64_t value) { add(key, json_number(value)); }
  void add_text(const char* key, const std::string& value) { add(key, json_string(value)); }
  std::string finish() const { return "{" + text_ + (multiline_ ? "\n}" : "}"); }

 private:
  bool multiline_;
  std::string text_;
};

// [\n    item,\n    item\n  ] or [] when empty.
std::string block_array(const std::vector<std::string>& items) {
  if (items.empty()) return "[]";
  std::string text = "[";
  for (size_t i = 0; i < items.size(); ++i) text += (i ? ",\n    " : "\n    ") + items[i];
  return text + "\n  ]";
}

}  // namespace

std::string manifest_to_json(const Manifest& m) {
  ObjectText root(/*multiline=*/true);
  root.add_int("version", m.version);
  root.add_text("baleine_version", m.baleine_version);
  root.add_text("created", m.created);
  root.add_int("step", m.step);
  root.add_int("tokens", m.tokens);
  root.add_int("next_batch", m.next_batch);
  root.add("seed", std::to_string(m.seed));  // uint64: above int64's range when > 2^63
  root.add_text("model_hash", m.model_hash);
  root.add_text("precision", m.precision);
  root.add_text("optimizer_state", m.optimizer_state);
  root.add_text("fp8_state", m.fp8_state);

  ObjectText layout(/*multiline=*/false);
  layout.add_int("world", m.layout.world);
  layout.add_int("pp", m.layout.pp);
  layout.add_int("dp", m.layout.dp);
  layout.add_int("ep", m.layout.ep);
  layout.add_text("schedule", m.layout.schedule);
  layout.add("zero", m.layout.zero ? "true" : "false");
  root.add("layout", layout.finish());

  ObjectText ledger(/*multiline=*/false);
  ledger.add_int("restart", m.ledger.restart);
  ledger.add_int("ledger_bytes", m.ledger.ledger_bytes);
  ledger.add("device_seconds", json_number(m.ledger.device_seconds));
  root.add("ledger", ledger.finish());

  ObjectText guard(/*multiline=*/false);
  std::string losses = "[";
  for (size_t i = 0; i < m.guard.recent_losses.size(); ++i) {
    losses += (i ? ", " : "") + json_number(m.guard.recent_losses[i]);
  }
  guard.add("recent_losses", losses + "]");
  guard.add_int("consecutive_skips", m.guard.consecutive_skips);
  guard.add_int("total_skips", m.guard.total_skips);
  guard.add_int("rollbacks", m.guard.rollbacks);
  root.add("guard", guard.finish());

  std::vector<std::string> shards, records;
  for (const ShardFile& shard : m.shards) shards.push_back(detail::shard_json(shard));
  for (const Record& record : m.records) records.push_back(detail::record_json(record));
  root.add("shards", block_array(shards));
  root.add("records", block_array(records));
  return root.finish() + "\n";
}

Manifest parse_manifest(const std::string& text, const std::string& path) {
  constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  try {
    const detail::JsonFields root(detail::load_json_object(text, path), path, "");
    Manifest m;
    // The version first: a newer format may have other fields, and "upgrade baleine" is then
    // the useful message, not "missing field".
    m.version = detail::read_version(root);
    m.baleine_version = root.text("baleine_version");
    m.created = root.text("created");
    m.step = root.integer("step", 0, kMaxInt64);
    m.tokens = root.integer("tokens", 0, kMaxInt64);
    m.next_batch = root.integer("next_batch", 0, kMaxInt64);
    m.seed = root.unsigned_integer("seed");
    m.model_hash = root.text("model_hash");
    m.precision = root.text("precision");
    m.optimizer_state = root.text("optimizer_state");
    m.fp8_state = root.text("fp8_state");

    const detail::JsonFields layout = root.object("layout");
    m.layout.world = static_cast<int>(layout.integer("world", 1, kMaxInt));
    m.layout.pp = static_cast<int>(layout.integer("pp", 1, kMaxInt));
    m.layout.dp = static_cast<int>(layout.integer("dp", 1, kMaxInt));
    m.layout.ep = static_cast<int>(layout.integer("ep", 1, kMaxInt));
    m.layout.schedule = layout.text("schedule");
    m.layout.zero = layout.boolean("zero");

    const detail::JsonFields ledger = root.object("ledger");
    m.ledger.restart = ledger.integer("restart", 0, kMaxInt64);
    m.ledger.ledger_bytes = ledger.integer("ledger_bytes", 0, kMaxInt64);
    m.ledger.device_seconds = ledger.number("device_seconds");

    const detail::JsonFields guard = root.object("guard");
    m.guard.recent_losses = guard.numbers("recent_losses");
    m.guard.consecutive_skips = guard.integer("consecutive_skips", 0, kMaxInt64);
    m.guard.total_skips = guard.integer("total_skips", 0, kMaxInt64);
    m.guard.rollbacks = guard.integer("rollbacks", 0, kMaxInt64);

    for (const auto& shard : root.objects("shards")) m.shards.push_back(detail::parse_shard(shard));
    for (const auto& record : root.objects("records")) {
      m.records.push_back(detail::parse_record(record));
    }
    detail::check_shards_and_records(m.shards, m.records, path);
    return m;
  } catch (const YAML::Exception& error) {
    // Parsing succeeded but a node could not be read as the field it should be.
    throw UserError(path, "", "is not a valid manifest (" + error.msg + ")", detail::kDamagedHint);
  }
}

}  // namespace baleine::ckpt
