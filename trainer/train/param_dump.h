#pragma once
// `baleine train --save-params DIR`: every rank writes the parameters it holds, by global name,
// to DIR/rank-<R>.params. Names are layout-independent (expert e is "...experts.<e>..." on
// whichever rank holds it), so runs on different layouts can be compared tensor by tensor.
// Format: "baleine-params 1 <tensors>\n", then per tensor "<name> <elements>\n" followed by
// the float32 values (little-endian). A stopgap for checking layouts until checkpoints land.
#include <map>
#include <string>
#include <vector>

#include "trainer/model/parameters.h"

namespace baleine::train {

void save_params(const std::string& dir, int rank, const model::ParameterStore<float>& params);
// Reads one file back (tests). Throws UserError naming the file on a malformed one.
std::map<std::string, std::vector<float>> load_params(const std::string& path);

}  // namespace baleine::train
