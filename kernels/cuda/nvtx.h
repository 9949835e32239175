#pragma once
// NVTX ranges, so an Nsight Systems timeline names every op of the CUDA backend. NVTX v3 is
// header-only (it ships with the CUDA toolkit) and costs a few nanoseconds when no profiler is
// attached. Usage, first line of an op's host function:  NvtxRange range("rmsnorm_forward");
#include <nvtx3/nvToolsExt.h>

namespace baleine::kernels::cuda {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace baleine::kernels::cuda
