// The resolved config, out: the start-of-run table and YAML that load_config reads back.
#include <algorithm>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "trainer/config/config.h"
#include "trainer/config/fields.h"
#include "trainer/config/key_schema.h"
#include "trainer/config/value_text.h"

namespace baleine::config {
namespace {

// Empty strings would vanish in a table column; "" shows that the value is empty.
std::string table_text(const std::string& value) { return value.empty() ? "\"\"" : value; }
template <typename T>
std::string table_text(const T& value) {
  return value_text(value);
}

// The section names of a dotted path: "train.lr.peak" -> {"train", "lr"}.
std::vector<std::string> sections_of(const std::string& path) {
  std::vector<std::string> names;
  size_t start = 0;
  for (size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', start)) {
    names.push_back(path.substr(start, dot - start));
    start = dot + 1;
  }
  return names;
}

// One value as YAML that reads back as itself. Strings are always quoted, so a name like
// "2024", "true" or "" stays a string; a list goes out as a flow sequence, "[2, 1, 1]".
void emit(YAML::Emitter& out, const std::string& value) { out << YAML::DoubleQuoted << value; }
void emit(YAML::Emitter& out, const std::vector<int64_t>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const int64_t value : values) out << value_text(value);
  out << YAML::EndSeq;
}
template <typename T>
void emit(YAML::Emitter& out, const T& value) {
  out << value_text(value);
}

}  // namespace

void print_config_table(const RunConfig& config, std::ostream& out) {
  std::vector<std::pair<std::string, std::string>> rows;
  for_each_field(config, [&](const char* path, const auto& member) {
    rows.emplace_back(path, table_text(member));
  });
  size_t width = 3;  // "key"
  for (const auto& row : rows) width = std::max(width, row.first.size());
  const auto pad = [width](const std::string& key) {
    return key + std::string(width + 2 - key.size(), ' ');
  };
  out << pad("key") << "value" << "   (config: " << table_text(config.source) << ")\n";
  for (const auto& row : rows) out << pad(row.first) << row.second << '\n';
}

std::string config_to_yaml(const RunConfig& config) {
  YAML::Emitter out;
  out << YAML::Comment("baleine resolved config (from " + table_text(config.source) + ")");
  out << YAML::BeginMap;
  std::vector<std::string> open;  // the sections currently open, outermost first
  // Opens the sections of `path` that are not open yet (closing those it leaves) and its key.
  const auto open_key = [&](const char* path) {
    const std::vector<std::string> sections = sections_of(path);
    size_t shared = 0;
    while (shared < open.size() && shared < sections.size() && open[shared] == sections[shared]) {
      ++shared;
    }
    for (; open.size() > shared; open.pop_back()) out << YAML::EndMap;
    for (; open.size() < sections.size(); open.push_back(sections[open.size()])) {
      out << YAML::Key << sections[open.size()] << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << last_name(path) << YAML::Value;
  };
  for_each_field(config, [&](const char* path, const auto& member) {
    open_key(path);
    emit(out, member);
  });
  for (; !open.empty(); open.pop_back()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace baleine::config
