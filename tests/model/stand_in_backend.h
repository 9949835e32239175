#pragma once
// A backend whose memory says it is not the host (tests/kernels/stand_in_device_memory.h) and
// whose operations are the CPU's: code that runs on it takes every device path (explicit
// transfers, staged communication, grouped expert Linears) and must still compute the CPU
// backend's bits.
#include "tests/kernels/stand_in_device_memory.h"
#include "trainer/model/backend.h"
#include "trainer/model/cpu_ops.h"
#include "trainer/model/parameter_ops.h"

namespace baleine::testing {

class StandInDeviceOps final : public model::CpuOps<float> {
 public:
  explicit StandInDeviceOps(kernels::Memory& memory) : memory_(memory) {}
  kernels::Memory& memory() override { return memory_; }
  // As the CUDA backend does: the model then runs its experts as grouped Linears
  // (model/grouped_experts.h), here Ops' default loop of the CPU Linears, which must give the
  // per-expert path's bits.
  bool groups_expert_linears() const override { return true; }

 private:
  kernels::Memory& memory_;
};

// Not copyable or movable: the backend points at its members.
struct StandInBackend {
  StandInBackend() = default;
  StandInBackend(const StandInBackend&) = delete;
  StandInBackend& operator=(const StandInBackend&) = delete;

  StandInDeviceMemory memory;
  StandInDeviceOps ops{memory};
  model::CpuParameterOps parameters;
  model::Backend backend{"stand-in", &memory, &ops, nullptr, &parameters};
};

}  // namespace baleine::testing
