#pragma once
// The JSON of manifest.json and of the shard indexes (index-RRRRR.json), written by hand (baleine
// has no JSON library) and read back with yaml-cpp (JSON is YAML 1.2 flow syntax). Shared by
// checkpoint_format.cpp (the manifest) and shard_writer.cpp (the indexes).
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/checkpoint/checkpoint_format.h"

namespace baleine::ckpt::detail {

// --- writing --------------------------------------------------------------------------------

// A JSON string literal: quote, backslash and control characters escaped (RFC 8259 §7).
std::string json_string(const std::string& text);
// The shortest text that reads back to the same double. JSON has no inf or NaN: those throw
// std::invalid_argument (a checkpoint that could not be read back must not be written).
std::string json_number(double value);
std::string json_number(int64_t value);
std::string shard_json(const ShardFile& shard);  // one line
std::string record_json(const Record& record);   // one line

std::string shard_file_name(int rank);  // "shard-00003.bin"
std::string index_file_name(int rank);  // "index-00003.json"

// --- reading --------------------------------------------------------------------------------

// The hint of every refusal of a damaged or foreign file.
extern const char* const kDamagedHint;

// Parses `text` as a JSON object. UserError naming `path` when it is not JSON or not an object.
YAML::Node load_json_object(const std::string& text, const std::string& path);

// The fields of one JSON object, each read with its type and range checked. A missing or
// wrong field is a UserError naming the file and the field's path ("records[3].end").
class JsonFields {
 public:
  // prefix: the object's own path with a trailing dot ("records[3]."), "" for the root.
  JsonFields(YAML::Node object, std::string path, std::string prefix);

  int64_t integer(const char* key, int64_t min, int64_t max) const;
  uint64_t unsigned_integer(const char* key) const;
  double number(const char* key) const;  // finite
  std::string text(const char* key) const;
  bool boolean(const char* key) const;
  std::vector<int64_t> integers(const char* key, int64_t min) const;  // an array of integers
  std::vector<double> numbers(const char* key) const;                 // an array of numbers
  JsonFields object(const char* key) const;
  std::vector<JsonFields> objects(const char* key) const;  // an array of objects

  std::string field(const std::string& key) const { return prefix_ + key; }
  const std::string& path() const { return path_; }
  [[noreturn]] void refuse(const std::string& field, const std::string& what) const;

 private:
  YAML::Node required(const char* key) const;
  [[noreturn]] void mistyped(const std::string& field, const YAML::Node& node,
                             const char* expected) const;

  YAML::Node object_;
  std::string path_, prefix_;
};

// The "version" field: refuses a version newer than kFormatVersion (upgrade baleine) or < 1.
int read_version(const JsonFields& root);

ShardFile parse_shard(const JsonFields& fields);
Record parse_record(const JsonFields& fields);

// What makes shards and records consistent (checkpoint_format.h): shard files are distinct
// plain names; each record lies within its tensor's elements and its shard's bytes; records of
// one (name, kind) agree on shape and dtype and do not overlap. UserError naming `path`.
void check_shards_and_records(const std::vector<ShardFile>& shards,
                              const std::vector<Record>& records, const std::string& path);

}  // namespace baleine::ckpt::detail
