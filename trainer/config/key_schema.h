#pragma once
// The tree of known keys, derived from fields.h: which dotted paths are sections (maps), which
// are values, and the names a section may contain. Used to reject unknown keys with a hint.
#include <map>
#include <string>
#include <vector>

namespace baleine::config {

class KeySchema {
 public:
  static const KeySchema& instance();

  bool is_value(const std::string& path) const;
  bool is_section(const std::string& path) const;  // "" is the top level
  // The key names directly inside `section`, in declaration order (values and subsections).
  const std::vector<std::string>& children(const std::string& section) const;
  // Every value path, in declaration order.
  const std::vector<std::string>& value_paths() const { return value_paths_; }
  // The value or section paths whose last name is `name` ("hidden" -> {"model.hidden"}).
  std::vector<std::string> paths_named(const std::string& name) const;
  // Every distinct last name of a value or section, for suggestions across sections.
  std::vector<std::string> all_names() const;

 private:
  KeySchema();
  void add(const std::string& path, bool is_value);

  std::vector<std::string> value_paths_;
  std::map<std::string, std::vector<std::string>> children_;  // section -> names
  std::map<std::string, bool> kinds_;                         // path -> is_value
};

// "train.lr.peak" -> "train.lr"; "train" -> "".
std::string parent_path(const std::string& path);
// "train.lr.peak" -> "peak".
std::string last_name(const std::string& path);
// "train" + "steps" -> "train.steps"; "" + "train" -> "train".
std::string child_path(const std::string& section, const std::string& name);

}  // namespace baleine::config
