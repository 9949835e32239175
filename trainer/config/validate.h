#pragma once
// The value rules of a loaded config: ranges, enumerations, and cross-field rules whose
// message shows the arithmetic. Runs after every key has been read and type-checked.
#include "trainer/config/config.h"
#include "trainer/config/key_origins.h"

namespace baleine::config {

// Throws baleine::UserError at the first broken rule, naming the line of the key to change.
void validate(const RunConfig& config, const KeyOrigins& origins);

}  // namespace baleine::config
