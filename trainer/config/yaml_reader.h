#pragma once
// Strict reading of a YAML tree into the typed config: every key must be known, every value
// must have its member's type. Each failure is a baleine::UserError naming where and the key.
#include <cstdint>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "trainer/config/key_origins.h"

namespace baleine::config {

// Rejects, at any depth: unknown keys (with a did-you-mean hint), duplicate keys, and a
// scalar or list where a section (a map) belongs. Values are type-checked by read_value.
void check_keys(const YAML::Node& root, const KeyOrigins& origins);

// The node at a dotted path, or an undefined node when any part of the path is absent.
YAML::Node find_node(const YAML::Node& root, const std::string& path);

// Converts the value of `key` (set at `where`) into `out`. `out` holds the default on entry,
// which the hints quote. Integers must be whole numbers, doubles accept 3, 3.0 and 3e-4,
// bools only true/false; numbers and bools must not be quoted. A list of integers is a YAML
// sequence, flow (`[2, 1, 1]`) or block (`- 2` lines), of such integers; a plain `2,1,1` or
// `4` (what a shell user types after --set) and the empty `--set key=` are accepted too.
void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                int64_t& out);
void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                uint64_t& out);
void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                double& out);
void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                bool& out);
void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                std::string& out);
void read_value(const YAML::Node& node, const std::string& key, const std::string& where,
                std::vector<int64_t>& out);

}  // namespace baleine::config
