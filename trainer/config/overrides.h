#pragma once
// --set overrides: "a.b.c=VALUE" edits the parsed YAML tree before anything is read from it,
// so an overridden key is type-checked and validated exactly like a key in the file.
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "trainer/config/key_origins.h"

namespace baleine::config {

// Applies each override in order (a later one wins), creating missing sections. VALUE is YAML:
// `train.steps=200`, `run.name="2024"`, `model.moe={top_k: 1, score: softmax}`; a map VALUE
// sets each of its keys and keeps the section's other keys. Records each key's origin as
// "--set <argument>". A malformed argument (no '=', an empty name, bad YAML) is a UserError.
void apply_overrides(YAML::Node& root, const std::vector<std::string>& overrides,
                     KeyOrigins& origins);

}  // namespace baleine::config
