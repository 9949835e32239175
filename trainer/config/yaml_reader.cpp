#include "trainer/config/yaml_reader.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>
#include <vector>

#include "trainer/config/did_you_mean.h"
#include "trainer/config/key_schema.h"
#include "trainer/config/value_text.h"
#include "trainer/errors.h"

namespace baleine::config {
namespace {

// What the user wrote, in words, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  if (node.IsNull()) return "an empty value";
  if (node.IsMap()) return "a map (a section of keys)";
  if (node.IsSequence()) return "a list";
  return "'" + node.Scalar() + "'";
}

// yaml-cpp tags a quoted scalar "!" and a plain one "?": a quoted "12" is a string in YAML,
// so it is not silently taken as a number.
bool is_quoted(const YAML::Node& node) { return node.Tag() == "!"; }

std::string example(const std::string& key, const std::string& value) {
  return "write it as `" + last_name(key) + ": " + value + "`";
}

// Checks that `node` is an unquoted scalar and returns its text without a leading '+'.
std::string plain_scalar_text(const YAML::Node& node, const std::string& key,
                              const std::string& where, const std::string& expected,
                              const std::string& default_text) {
  if (node.IsNull()) {
    throw UserError(where, key, "expected " + expected + ", got " + describe(node),
                    "give a value, or delete the key to keep the default (" + default_text + ")");
  }
  if (!node.IsScalar()) {
    throw UserError(where, key, "expected " + expected + ", got " + describe(node),
                    example(key, default_text));
  }
  if (is_quoted(node)) {
    throw UserError(where, key,
                    "expected " + expected + ", got the quoted string '" + node.Scalar() + "'",
                    "remove the quotes: " + example(key, node.Scalar()));
  }
  const std::string& text = node.Scalar();
  return !text.empty() && text[0] == '+' ? text.substr(1) : text;
}

// from_chars that must consume the whole text.
template <typename T>
bool parse_all(const std::string& text, T& out, std::errc* error = nullptr) {
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, out);
  if (error) *error = result.ec;
  return result.ec == std::errc() && result.ptr == end;
}

// Why an integer's text was refused, so that scalar keys and list items word it alike.
enum class IntegerProblem { kNone, kOutOfRange, kNegative, kWholeButSpelledAsReal, kNotWhole };

// Parses all of `text` into `out`; for kWholeButSpelledAsReal ("1e3", "100.0") `whole` receives
// the integer the user meant.
template <typename Integer>
IntegerProblem parse_integer(const std::string& text, Integer& out, int64_t& whole) {
  std::errc error{};
  Integer value{};
  if (parse_all(text, value, &error)) {
    out = value;
    return IntegerProblem::kNone;
  }
  if (error == std::errc::result_out_of_range) return IntegerProblem::kOutOfRange;
  if (std::is_unsigned_v<Integer> && !text.empty() && text[0] == '-') {
    return IntegerProblem::kNegative;
  }
  double as_double = 0.0;
  if (parse_all(text, as_double) && std::isfinite(as_double) &&
      std::floor(as_double) == as_double && std::fabs(as_double) < 1e18) {
    whole = static_cast<int64_t>(as_double);
    return IntegerProblem::kWholeButSpelledAsReal;
  }
  return IntegerProblem::kNotWhole;
}

template <typename Integer>
void read_integer(const YAML::Node& node, const std::string& key, const std::string& where,
                  Integer& out, const std::string& expected) {
  const std::string text = plain_scalar_text(node, key, where, expected, value_text(out));
  const std::string got = "expected " + expected + ", got '" + node.Scalar() + "'";
  int64_t whole = 0;
  switch (parse_integer(text, out, whole)) {
    case IntegerProblem::kNone:
      return;
    case IntegerProblem::kOutOfRange:
      throw UserError(where, key, got + ": out of range",
                      "the largest accepted value is " +
                          value_text(std::numeric_limits<Integer>::max()));
    case IntegerProblem::kNegative:
      throw UserError(where, key, got, "this value cannot be negative");
    case IntegerProblem::kWholeButSpelledAsReal:
      // The intent is clear, the spelling is not an integer.
      throw UserError(where, key, got, example(key, value_text(whole)));
    case IntegerProblem::kNotWhole:
      break;
  }
  throw UserError(where, key, got, "write a whole number, e.g. the default: " + value_text(out));
}

// --- lists of integers ---------------------------------------------------------------------

const std::string kExpectedList = "expected a list of integers, got ";

std::string list_example(const std::string& key) {
  return "write it as `" + last_name(key) + ": [2, 1, 1]`, or as one `- 2` line per item";
}

// The integer in `text`, the spelling of one item; `item` names it for messages ("'x' as item
// 2"). Items are signed: the value rules, not the type, say which ranges make sense.
int64_t list_item(const std::string& text, const std::string& item, const std::string& key,
                  const std::string& where) {
  const std::string plain = !text.empty() && text[0] == '+' ? text.substr(1) : text;
  int64_t value = 0, whole = 0;
  switch (parse_integer(plain, value, whole)) {
    case IntegerProblem::kNone:
      return value;
    case IntegerProblem::kOutOfRange:
      throw UserError(where, key, kExpectedList + item + ": out of range",
                      "the largest accepted value is " +
                          value_text(std::numeric_limits<int64_t>::max()));
    case IntegerProblem::kWholeButSpelledAsReal:
      throw UserError(where, key, kExpectedList + item, "write it as " + value_text(whole));
    case IntegerProblem::kNegative:
    case IntegerProblem::kNotWhole:
      break;
  }
  throw UserError(where, key, kExpectedList + item,
                  "items are whole numbers: " + list_example(key));
}

// A YAML sequence: every item an unquoted integer scalar.
std::vector<int64_t> read_sequence(const YAML::Node& node, const std::string& key,
                                   const std::string& where) {
  std::vector<int64_t> values;
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string position = " as item " + std::to_string(i + 1);
    if (!item.IsScalar()) {
      throw UserError(where, key, kExpectedList + describe(item) + position,
                      item.IsNull() ? "give every item a value: " + list_example(key)
                                    : "a list of lists or maps is not accepted: " +
                                          list_example(key));
    }
    if (is_quoted(item)) {
      throw UserError(where, key,
                      kExpectedList + "the quoted string '" + item.Scalar() + "'" + position,
                      "remove the quotes around the item");
    }
    values.push_back(list_item(item.Scalar(), "'" + item.Scalar() + "'" + position, key, where));
  }
  return values;
}

// A plain scalar "2,1,1" (what a shell user types after --set) or "4" is read as that list;
// "" (from `--set key=`) as the empty list, like `--set data.val=` clears a string.
std::vector<int64_t> read_comma_separated(const std::string& text, const std::string& key,
                                          const std::string& where) {
  std::vector<int64_t> values;
  if (text.find_first_not_of(" \t") == std::string::npos) return values;
  const bool several = text.find(',') != std::string::npos;
  size_t start = 0;
  for (size_t index = 1;; ++index) {
    const size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    const size_t first = item.find_first_not_of(" \t");
    item = first == std::string::npos ? "" : item.substr(first, item.find_last_not_of(" \t") -
                                                                    first + 1);
    const std::string named =
        several ? "'" + item + "' as item " + std::to_string(index) + " of '" + text + "'"
                : "'" + text + "'";
    values.push_back(list_item(item, named, key, where));
    if (comma == std::string::npos) return values;
    start = comma + 1;
  }
}

void check_map(const YAML::Node& map, const std::string& section, const KeyOrigins& origins) {
  const KeySchema& schema = KeySchema::instance();
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node name_node = it->first;  // a copy: the iterator hands out temporaries
    const std::string name = name_node.IsScalar() ? name_node.Scalar() : std::string();
    const std::string path = child_path(section, name);
    const std::string where = origins.where_key(path, name_node.Mark());
    if (!name_node.IsScalar() || name.empty()) {
      throw UserError(where, section, "a key must be a plain name, got " + describe(name_node));
    }
    if (!seen.insert(name).second) {
      throw UserError(where, path, "duplicate key",
                      "each key may appear once per section; delete one of the two");
    }
    if (schema.is_value(path)) continue;  // typed by read_value
    if (!schema.is_section(path)) {
      const std::vector<std::string>& known = schema.children(section);
      std::string known_list = "Known keys in " + section + ": " + join(known);
      if (section.empty()) {  // the top level: a few plain keys (device), the rest sections
        std::vector<std::string> keys, sections;
        for (const std::string& k : known) (schema.is_value(k) ? keys : sections).push_back(k);
        known_list = "Known sections: " + join(sections) + "; top-level keys: " + join(keys);
      }
      std::string hint;
      const std::string close = closest_match(name, known);
      // Not a typo of a neighbour: maybe a key of another section ("train.hidden"), or a typo
      // of one ("train.warmup" for train.lr.warmup_steps). Suggest it only when unambiguous.
      const std::vector<std::string> elsewhere =
          schema.paths_named(closest_match(name, schema.all_names()));
      if (!close.empty()) {
        hint = "did you mean '" + child_path(section, close) + "'? ";
      } else if (elsewhere.size() == 1) {
        const std::string home = parent_path(elsewhere[0]);
        hint = "'" + last_name(elsewhere[0]) + "' belongs in " +
               (home.empty() ? "the top level" : home) + ": did you mean '" + elsewhere[0] +
               "'? ";
      }
      throw UserError(where, path, section.empty() ? "unknown section" : "unknown key",
                      hint + known_list);
    }
    const YAML::Node value = it->second;
    if (value.IsNull()) continue;  // "moe:" with every key commented out: all defaults
    if (!value.IsMap()) {
      throw UserError(where, path, "expected a section (a map of keys), got " + describe(value),
                      "indent its keys below it: " + join(schema.children(path)));
    }
    check_map(value, path, origins);
  }
}

}  // namespace

void check_keys(const YAML::Node& root, const KeyOrigins& origins) {
  check_map(root, "", origins);
}

YAML::Node find_node(const YAML::Node& root, const std::string& path) {
  YAML::Node node = root;
  size_t start = 0;
  while (true) {
    if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? dot : dot - start);
    // Looking up through a const handle never inserts the key into the tree.
    const YAML::Node parent = node;
    const YAML::Node child = parent[name];
    if (!child.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    // reset() rebinds the handle; assignment would overwrite the node inside the tree.
    node.reset(child);
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                int64_t& out) {
  read_integer(node, key, where, out, "an integer");
}

void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                uint64_t& out) {
  read_integer(node, key, where, out, "a non-negative integer");
}

void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                double& out) {
  const std::string text = plain_scalar_text(node, key, where, "a number", value_text(out));
  double value = 0.0;
  if (!parse_all(text, value)) {
    throw UserError(where, key, "expected a number, got '" + node.Scalar() + "'",
                    "numbers look like 3, 0.02 or 3e-4; the default is " + value_text(out));
  }
  if (!std::isfinite(value)) {
    throw UserError(where, key, "expected a finite number, got '" + node.Scalar() + "'");
  }
  out = value;
}

void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                bool& out) {
  const std::string text = plain_scalar_text(node, key, where, "true or false", value_text(out));
  if (text != "true" && text != "false") {
    // YAML 1.1 also reads yes/no/on/off as booleans; one spelling avoids surprises.
    throw UserError(where, key, "expected true or false, got '" + node.Scalar() + "'",
                    "only `true` and `false` are accepted");
  }
  out = text == "true";
}

void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                std::string& out) {
  if (!node.IsScalar()) {
    const std::string hint =
        node.IsNull() ? "give a value, or delete the key to keep the default ('" + out + "')"
                      : "quote the text: " + example(key, "\"...\"");
    throw UserError(where, key, "expected a string, got " + describe(node), hint);
  }
  // Any scalar is text here: a run may be called 2024 or true without quotes.
  out = node.Scalar();
}

void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                std::vector<int64_t>& out) {
  if (node.IsSequence()) {
    out = read_sequence(node, key, where);
    return;
  }
  if (node.IsNull()) {
    throw UserError(where, key, kExpectedList + describe(node),
                    "write `[]` for an empty list, or delete the key to keep the default (" +
                        value_text(out) + ")");
  }
  if (node.IsMap()) throw UserError(where, key, kExpectedList + describe(node), list_example(key));
  if (is_quoted(node)) {
    throw UserError(where, key, kExpectedList + "the quoted string '" + node.Scalar() + "'",
                    "remove the quotes: " + list_example(key));
  }
  out = read_comma_separated(node.Scalar(), key, where);
}

}  // namespace baleine::config
