#include "trainer/config/key_origins.h"

#include "trainer/config/key_schema.h"

namespace baleine::config {

std::string KeyOrigins::at(const YAML::Mark& mark) const {
  // yaml-cpp counts lines from 0; editors count from 1.
  return mark.line < 0 ? file_ : file_ + ":" + std::to_string(mark.line + 1);
}

void KeyOrigins::record_file_keys(const YAML::Node& root) { record_map(root, ""); }

void KeyOrigins::record_map(const YAML::Node& map, const std::string& section) {
  if (!map.IsMap()) return;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string path = child_path(section, it->first.Scalar());
    // The first occurrence wins, like the duplicate-key error that reports the second.
    where_.emplace(path, at(it->first.Mark()));
    record_map(it->second, path);
  }
}

void KeyOrigins::record_override(const std::string& path, const std::string& argument) {
  const std::string below = path + ".";
  for (auto it = where_.begin(); it != where_.end();) {
    it = it->first.compare(0, below.size(), below) == 0 ? where_.erase(it) : std::next(it);
  }
  where_[path] = argument;
  overridden_.insert(path);
}

void KeyOrigins::record_created_section(const std::string& path, const std::string& argument) {
  created_.emplace(path, argument);
}

std::string KeyOrigins::where_key(const std::string& path, const YAML::Mark& mark) const {
  for (std::string p = path; !p.empty(); p = parent_path(p)) {
    if (overridden_.count(p)) return where(path);
    const auto created = created_.find(p);
    if (created != created_.end()) return created->second;
  }
  return at(mark);
}

std::string KeyOrigins::where(const std::string& path) const {
  for (std::string p = path; !p.empty(); p = parent_path(p)) {
    const auto it = where_.find(p);
    if (it != where_.end()) return it->second;
  }
  return file_;
}

}  // namespace baleine::config
