// Writing and type-checked reading of the JSON fields of manifests and shard indexes.
#include "trainer/checkpoint/manifest_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <utility>

#include "baleine_version.h"
#include "trainer/config/json_text.h"
#include "trainer/errors.h"

namespace baleine::ckpt::detail {

// --- writing --------------------------------------------------------------------------------

std::string json_string(const std::string& text) { return config::json_string(text); }

// std::to_chars without a precision writes the shortest text that reads back to the same
// double (C++17 [charconv.to.chars]), independent of the locale (printf's "%.17g" is not).
std::string json_number(double value) {
  if (!std::isfinite(value)) {
    throw std::invalid_argument("checkpoint manifest: a non-finite number cannot be written");
  }
  return config::json_number(value);
}

std::string json_number(int64_t value) { return std::to_string(value); }

std::string shard_json(const ShardFile& shard) {
  return "{\"file\": " + json_string(shard.file) +
         ", \"rank\": " + json_number(int64_t{shard.rank}) +
         ", \"bytes\": " + json_number(shard.bytes) +
         ", \"crc32c\": " + json_number(int64_t{shard.crc32c}) + "}";
}

std::string record_json(const Record& record) {
  std::string shape = "[";
  for (size_t i = 0; i < record.shape.size(); ++i) {
    shape += (i ? ", " : "") + json_number(record.shape[i]);
  }
  shape += "]";
  return "{\"name\": " + json_string(record.name) +
         ", \"kind\": " + json_string(kind_name(record.kind)) +
         ", \"dtype\": " + json_string(dtype_name(record.dtype)) + ", \"shape\": " + shape +
         ", \"begin\": " + json_number(record.begin) + ", \"end\": " + json_number(record.end) +
         ", \"shard\": " + json_number(int64_t{record.shard}) +
         ", \"offset\": " + json_number(record.offset) + "}";
}

std::string shard_file_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "shard-%05d.bin", rank);
  return name;
}

std::string index_file_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "index-%05d.json", rank);
  return name;
}

// --- reading --------------------------------------------------------------------------------

const char* const kDamagedHint =
    "the checkpoint is damaged or was not written by baleine: resume from an older complete "
    "checkpoint";

namespace {

// yaml-cpp tags plain (unquoted) scalars "?", quoted ones "!": JSON numbers, true/false and
// null are plain, JSON strings are quoted.
bool is_plain_scalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }
bool is_string(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "!"; }

// std::from_chars accepts neither "0x10" nor "1.5" as an integer, ignores the locale and must
// consume the whole text; out-of-range values fail instead of wrapping.
template <typename T>
bool parse_number(const std::string& text, T* value) {
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, *value);
  return result.ec == std::errc() && result.ptr == end;
}

std::string shown(const YAML::Node& node) {
  if (node.IsNull()) return "null";
  if (node.IsMap()) return "an object";
  if (node.IsSequence()) return "an array";
  constexpr size_t kMaxShown = 40;
  const std::string& text = node.Scalar();
  const std::string cut = text.size() > kMaxShown ? text.substr(0, kMaxShown) + "..." : text;
  return is_string(node) ? "the string \"" + cut + "\"" : cut;
}

// The enumerators of Kind and DType (checkpoint_format.h), named by kind_name / dtype_name.
constexpr int kKindCount = 4;
constexpr int kDTypeCount = 2;

template <typename Enum>
bool enum_from_name(const std::string& text, const char* (*name_of)(Enum), int count, Enum* value) {
  for (int i = 0; i < count; ++i) {
    if (text == name_of(static_cast<Enum>(i))) {
      *value = static_cast<Enum>(i);
      return true;
    }
  }
  return false;
}

}  // namespace

YAML::Node load_json_object(const std::string& text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& error) {
    throw UserError(path, "", "is not valid JSON (" + error.msg + ")", kDamagedHint);
  }
  if (!root.IsMap()) {
    throw UserError(path, "", "is not a JSON object", kDamagedHint);
  }
  return root;
}

JsonFields::JsonFields(YAML::Node object, std::string path, std::string prefix)
    : object_(std::move(object)), path_(std::move(path)), prefix_(std::move(prefix)) {}

void JsonFields::refuse(const std::string& field, const std::string& what) const {
  throw UserError(path_, field, what, kDamagedHint);
}

void JsonFields::mistyped(const std::string& field, const YAML::Node& node,
                          const char* expected) const {
  refuse(field, std::string("should be ") + expected + ", got " + shown(node));
}

YAML::Node JsonFields::required(const char* key) const {
  const YAML::Node& object = object_;  // const: a lookup must not insert the key
  YAML::Node node = object[key];
  if (!node.IsDefined()) refuse(field(key), "is missing");
  return node;
}

int64_t JsonFields::integer(const char* key, int64_t min, int64_t max) const {
  const YAML::Node node = required(key);
  int64_t value = 0;
  if (!is_plain_scalar(node) || !parse_number(node.Scalar(), &value)) {
    mistyped(field(key), node, "an integer");
  }
  if (value < min || value > max) {
    refuse(field(key), std::to_string(value) + " is outside [" + std::to_string(min) + ", " +
                           std::to_string(max) + "]");
  }
  return value;
}

uint64_t JsonFields::unsigned_integer(const char* key) const {
  const YAML::Node node = required(key);
  uint64_t value = 0;
  if (!is_plain_scalar(node) || !parse_number(node.Scalar(), &value)) {
    mistyped(field(key), node, "an integer in [0, 2^64)");
  }
  return value;
}

double JsonFields::number(const char* key) const {
  const YAML::Node node = required(key);
  double value = 0;
  if (!is_plain_scalar(node) || !parse_number(node.Scalar(), &value) || !std::isfinite(value)) {
    mistyped(field(key), node, "a finite number");
  }
  return value;
}

std::string JsonFields::text(const char* key) const {
  const YAML::Node node = required(key);
  if (!is_string(node)) mistyped(field(key), node, "a string");
  return node.Scalar();
}

bool JsonFields::boolean(const char* key) const {
  const YAML::Node node = required(key);
  if (is_plain_scalar(node) && node.Scalar() == "true") return true;
  if (is_plain_scalar(node) && node.Scalar() == "false") return false;
  mistyped(field(key), node, "true or false");
}

std::vector<int64_t> JsonFields::integers(const char* key, int64_t min) const {
  const YAML::Node node = required(key);
  if (!node.IsSequence()) mistyped(field(key), node, "an array of integers");
  std::vector<int64_t> values;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string element = field(key) + "[" + std::to_string(i) + "]";
    int64_t value = 0;
    if (!is_plain_scalar(node[i]) || !parse_number(node[i].Scalar(), &value)) {
      mistyped(element, node[i], "an integer");
    }
    if (value < min) refuse(element, std::to_string(value) + " is below " + std::to_string(min));
    values.push_back(value);
  }
  return values;
}

std::vector<double> JsonFields::numbers(const char* key) const {
  const YAML::Node node = required(key);
  if (!node.IsSequence()) mistyped(field(key), node, "an array of numbers");
  std::vector<double> values;
  for (size_t i = 0; i < node.size(); ++i) {
    double value = 0;
    if (!is_plain_scalar(node[i]) || !parse_number(node[i].Scalar(), &value) ||
        !std::isfinite(value)) {
      mistyped(field(key) + "[" + std::to_string(i) + "]", node[i], "a finite number");
    }
    values.push_back(value);
  }
  return values;
}

JsonFields JsonFields::object(const char* key) const {
  const YAML::Node node = required(key);
  if (!node.IsMap()) mistyped(field(key), node, "an object");
  return JsonFields(node, path_, field(key) + ".");
}

std::vector<JsonFields> JsonFields::objects(const char* key) const {
  const YAML::Node node = required(key);
  if (!node.IsSequence()) mistyped(field(key), node, "an array of objects");
  std::vector<JsonFields> elements;
  elements.reserve(node.size());
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string element = field(key) + "[" + std::to_string(i) + "]";
    if (!node[i].IsMap()) mistyped(element, node[i], "an object");
    elements.emplace_back(node[i], path_, element + ".");
  }
  return elements;
}

int read_version(const JsonFields& root) {
  const int64_t version = root.integer("version", 1, std::numeric_limits<int64_t>::max());
  if (version > kFormatVersion) {
    throw UserError(root.path(), root.field("version"),
                    "written in checkpoint format version " + std::to_string(version) +
                        "; this build of baleine (" BALEINE_VERSION
                        ") reads format versions up to " +
                        std::to_string(kFormatVersion),
                    "upgrade baleine to read it, or resume from a checkpoint this build wrote");
  }
  return static_cast<int>(version);
}

ShardFile parse_shard(const JsonFields& fields) {
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  ShardFile shard;
  shard.file = fields.text("file");
  shard.rank = static_cast<int>(fields.integer("rank", 0, kMaxInt));
  shard.bytes = fields.integer("bytes", 0, std::numeric_limits<int64_t>::max());
  shard.crc32c = static_cast<uint32_t>(fields.integer("crc32c", 0, 0xFFFFFFFFll));
  return shard;
}

Record parse_record(const JsonFields& fields) {
  constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
  Record record;
  record.name = fields.text("name");
  if (record.name.empty()) fields.refuse(fields.field("name"), "is empty");
  const std::string kind = fields.text("kind");
  if (!enum_from_name(kind, kind_name, kKindCount, &record.kind)) {
    fields.refuse(fields.field("kind"),
                  "unknown kind \"" + kind + "\" (known: param, adam_m, adam_v, expert_bias)");
  }
  const std::string dtype = fields.text("dtype");
  if (!enum_from_name(dtype, dtype_name, kDTypeCount, &record.dtype)) {
    fields.refuse(fields.field("dtype"), "unknown dtype \"" + dtype + "\" (known: f32, bf16)");
  }
  record.shape = fields.integers("shape", 0);
  record.begin = fields.integer("begin", 0, kMaxInt64);
  record.end = fields.integer("end", 0, kMaxInt64);
  record.shard = static_cast<int>(fields.integer("shard", 0, std::numeric_limits<int>::max()));
  record.offset = fields.integer("offset", 0, kMaxInt64);
  return record;
}

}  // namespace baleine::ckpt::detail
