// load_config: YAML text -> parsed tree -> --set overrides -> key check -> typed read ->
// defaults that depend on other keys -> value rules. Each stage throws baleine::UserError.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "trainer/config/config.h"
#include "trainer/config/fields.h"
#include "trainer/config/key_origins.h"
#include "trainer/config/key_schema.h"
#include "trainer/config/did_you_mean.h"
#include "trainer/config/overrides.h"
#include "trainer/config/validate.h"
#include "trainer/config/yaml_reader.h"
#include "trainer/errors.h"

namespace baleine::config {
namespace {

const char* kMinimalConfigHint = "a config needs at least `data: {train: <token shards>}`";

// Line `index` (0-based) of `text`, or "" past its end.
std::string line_of(const std::string& text, int index) {
  size_t start = 0;
  for (int i = 0; i < index && start != std::string::npos; ++i) {
    start = text.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos || start > text.size()) return "";
  return text.substr(start, text.find('\n', start) - start);
}

YAML::Node parse_yaml(const std::string& text, const std::string& name) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    // yaml-cpp counts lines and columns from 0; editors count from 1.
    const std::string where = e.mark.line < 0 ? name
                                              : name + ":" + std::to_string(e.mark.line + 1) +
                                                    ":" + std::to_string(e.mark.column + 1);
    const bool has_tab = line_of(text, e.mark.line).find('\t') != std::string::npos;
    throw UserError(where, "", "invalid YAML: " + e.msg,
                    has_tab ? "indent with spaces: YAML does not allow tabs for indentation"
                            : "check the indentation, brackets and quotes on this line and the "
                              "one before; `key: value` needs a space after the colon");
  }
}

void check_top_level(const YAML::Node& root, const std::string& name) {
  if (!root.IsDefined() || root.IsNull()) {
    throw UserError(name, "", "the config is empty", kMinimalConfigHint);
  }
  if (!root.IsMap()) {
    const std::string where =
        root.Mark().line < 0 ? name : name + ":" + std::to_string(root.Mark().line + 1);
    throw UserError(where, "",
                    std::string("the top level must be a map of sections, got ") +
                        (root.IsSequence() ? "a list" : "'" + root.Scalar() + "'"),
                    "known sections: " + join(KeySchema::instance().children("")));
  }
}

}  // namespace

RunConfig load_config_from_string(const std::string& yaml_text, const std::string& display_name,
                                  const std::vector<std::string>& overrides) {
  YAML::Node root = parse_yaml(yaml_text, display_name);
  check_top_level(root, display_name);

  KeyOrigins origins(display_name);
  origins.record_file_keys(root);
  apply_overrides(root, overrides, origins);
  check_keys(root, origins);

  RunConfig config;
  config.source = display_name;
  for_each_field(config, [&](const char* path, auto& member) {
    const YAML::Node node = find_node(root, path);
    if (node.IsDefined()) read_value(node, path, origins.where(path), member);
    config.origins[path] = origins.where(path);
  });
  // An empty dir (absent, or cleared with --set run.dir=) follows the run's name.
  if (config.run.dir.empty()) config.run.dir = "runs/" + config.run.name;

  validate(config, origins);
  return config;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    throw UserError(path, "", "is a directory, not a config file",
                    "pass the path of a YAML file inside it");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw UserError(path, "", std::string("cannot read the config file: ") + std::strerror(errno),
                    "check the path (relative paths start at the current directory)");
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    throw UserError(path, "", std::string("error while reading the config file: ") +
                                  std::strerror(errno));
  }
  return load_config_from_string(text.str(), path, overrides);
}

}  // namespace baleine::config
