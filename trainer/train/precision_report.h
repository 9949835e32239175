#pragma once
// The start banner's precision section: the resolved format of every Linear (grouped into runs
// of blocks that agree), what stays in high precision, and the EP wire formats.
#include <string>

#include "trainer/config/config.h"
#include "trainer/model/linear.h"

namespace baleine::train {

std::string describe_precision(const config::RunConfig& config,
                               const model::PrecisionPlan& plan);

}  // namespace baleine::train
