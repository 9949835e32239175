#include "trainer/config/overrides.h"

#include "trainer/errors.h"

namespace baleine::config {
namespace {

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

std::vector<std::string> split_key(const std::string& key, const std::string& where) {
  std::vector<std::string> names;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    names.push_back(key.substr(start, dot == std::string::npos ? dot : dot - start));
    if (names.back().empty()) {
      throw UserError(where, key, "the key path has an empty name",
                      "separate names with single dots, e.g. --set train.lr.peak=1e-3");
    }
    if (dot == std::string::npos) return names;
    start = dot + 1;
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string path;
  for (const std::string& name : names) path += (path.empty() ? "" : ".") + name;
  return path;
}

void set_path(YAML::Node& root, const std::vector<std::string>& names, const YAML::Node& value,
              const std::string& where, KeyOrigins& origins) {
  if (value.IsMap()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      std::vector<std::string> child = names;
      child.push_back(it->first.IsScalar() ? it->first.Scalar() : std::string());
      if (child.back().empty()) {
        throw UserError(where, joined(names), "a key inside VALUE must be a plain name");
      }
      set_path(root, child, it->second, where, origins);
    }
    return;
  }
  YAML::Node section = root;
  std::string section_path;
  for (size_t i = 0; i + 1 < names.size(); ++i) {
    section_path += (i == 0 ? "" : ".") + names[i];
    // A missing, empty or scalar section becomes a map; the override says what the user wants.
    if (!section[names[i]].IsMap()) {
      section[names[i]] = YAML::Node(YAML::NodeType::Map);
      origins.record_created_section(section_path, where);
    }
    // reset() rebinds the handle; assignment would overwrite the node inside the tree.
    section.reset(section[names[i]]);
  }
  section[names.back()] = value;
  origins.record_override(joined(names), where);
}

}  // namespace

void apply_overrides(YAML::Node& root, const std::vector<std::string>& overrides,
                     KeyOrigins& origins) {
  for (const std::string& argument : overrides) {
    const std::string where = "--set " + argument;
    const size_t equals = argument.find('=');
    if (equals == std::string::npos) {
      throw UserError(where, "", "an override must look like key.path=VALUE",
                      "e.g. --set train.steps=200 or --set model.moe.score=softmax");
    }
    const std::string key = trim(argument.substr(0, equals));
    if (key.empty()) {
      throw UserError(where, "", "the key before '=' is empty",
                      "e.g. --set train.steps=200");
    }
    const std::vector<std::string> names = split_key(key, where);
    const std::string text = argument.substr(equals + 1);
    YAML::Node value;
    if (trim(text).empty()) {
      value = YAML::Node(std::string());  // "data.val=" clears a string
    } else {
      try {
        value = YAML::Load(text);
      } catch (const YAML::Exception& e) {
        throw UserError(where, key, "VALUE is not valid YAML: " + e.msg,
                        "quote text with special characters, e.g. --set 'run.name=\"a: b\"'");
      }
    }
    set_path(root, names, value, where, origins);
  }
}

}  // namespace baleine::config
