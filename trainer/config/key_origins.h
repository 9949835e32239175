#pragma once
// Where each key of the merged YAML tree came from, so that every error can name the line the
// user has to edit: "configs/x.yaml:12" for a file key, "--set train.steps=abc" for an override.
#include <map>
#include <set>
#include <string>

#include <yaml-cpp/yaml.h>

namespace baleine::config {

class KeyOrigins {
 public:
  explicit KeyOrigins(std::string file) : file_(std::move(file)) {}

  // Records every key of a parsed file at any depth, with its 1-based line.
  void record_file_keys(const YAML::Node& root);
  // An override replaced `path` and everything below it.
  void record_override(const std::string& path, const std::string& argument);
  // An override created the section `path` (absent from the file): a misspelt section name
  // there is the override's fault, while keys left at their defaults still point at the file.
  void record_created_section(const std::string& path, const std::string& argument);

  // Where `path` was set; for a key that was not set, where its nearest enclosing section was
  // set, else the file alone.
  std::string where(const std::string& path) const;
  // True when the file or an override set `path` itself.
  bool is_set(const std::string& path) const { return where_.count(path) > 0; }
  const std::string& file() const { return file_; }

  // "file:line" for a YAML mark, or "file" when the node carries no position.
  std::string at(const YAML::Mark& mark) const;
  // Where the key at `path` whose name node has `mark` was written: its override, or its own
  // line (which, for a repeated key, is not the line of the first occurrence).
  std::string where_key(const std::string& path, const YAML::Mark& mark) const;

 private:
  void record_map(const YAML::Node& map, const std::string& section);

  std::string file_;
  std::map<std::string, std::string> where_;
  std::set<std::string> overridden_;  // paths set by --set; their marks are not file lines
  std::map<std::string, std::string> created_;  // sections --set created -> its argument
};

}  // namespace baleine::config
