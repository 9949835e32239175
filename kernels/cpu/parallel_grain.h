#pragma once
// When an elementwise kernel splits its loop over the OpenMP threads. A parallel region's fork
// and join costs about a microsecond when the threads are spinning between regions (libgomp's
// default); a pass over 8K floats of L2-resident data takes a few. Below this many elements a
// kernel runs on the calling thread.
#include <cstdint>

namespace baleine::kernels {

constexpr int64_t kParallelGrain = int64_t{1} << 13;

}  // namespace baleine::kernels
