#include "trainer/config/key_schema.h"

#include <set>

#include "trainer/config/fields.h"

namespace baleine::config {

std::string parent_path(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

std::string last_name(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

std::string child_path(const std::string& section, const std::string& name) {
  return section.empty() ? name : section + "." + name;
}

const KeySchema& KeySchema::instance() {
  static const KeySchema schema;
  return schema;
}

KeySchema::KeySchema() {
  children_[""];  // the top level exists even before any key is added
  RunConfig defaults;
  for_each_field(defaults, [this](const char* path, const auto&) {
    value_paths_.push_back(path);
    add(path, /*is_value=*/true);
  });
}

void KeySchema::add(const std::string& path, bool is_value) {
  if (kinds_.count(path)) return;
  kinds_[path] = is_value;
  const std::string parent = parent_path(path);
  if (!parent.empty()) add(parent, /*is_value=*/false);
  children_[parent].push_back(last_name(path));
  if (!is_value) children_[path];
}

bool KeySchema::is_value(const std::string& path) const {
  const auto it = kinds_.find(path);
  return it != kinds_.end() && it->second;
}

bool KeySchema::is_section(const std::string& path) const {
  return children_.count(path) > 0;
}

const std::vector<std::string>& KeySchema::children(const std::string& section) const {
  static const std::vector<std::string> none;
  const auto it = children_.find(section);
  return it == children_.end() ? none : it->second;
}

std::vector<std::string> KeySchema::all_names() const {
  std::set<std::string> names;
  for (const auto& [path, is_value] : kinds_) names.insert(last_name(path));
  return std::vector<std::string>(names.begin(), names.end());
}

std::vector<std::string> KeySchema::paths_named(const std::string& name) const {
  std::vector<std::string> paths;
  for (const auto& [path, is_value] : kinds_) {
    if (last_name(path) == name) paths.push_back(path);
  }
  return paths;
}

}  // namespace baleine::config
