#include "trainer/train/device_selection.h"

#include <cstdlib>

#include "kernels/device.h"
#include "trainer/errors.h"

namespace baleine::train {

DeviceFacts this_process_devices() {
  DeviceFacts facts;
  facts.cuda_built = kernels::built_with_cuda();
  facts.gpus = static_cast<int>(kernels::cuda_devices().size());
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) facts.visible_devices = visible;
  return facts;
}

void require_device(const config::RunConfig& config, const DeviceFacts& facts) {
  if (config.device != "cuda") return;
  const std::string where = config.where("device");
  if (!facts.cuda_built) {
    throw UserError(where, "device",
                    "device: cuda, but this baleine was built without the CUDA backend",
                    "build on a machine with the CUDA toolkit (scripts/build.sh finds nvcc on "
                    "PATH or in /usr/local/cuda), or set device: cpu");
  }
  if (facts.gpus == 0) {
    const std::string visible = facts.visible_devices.empty()
                                    ? std::string()
                                    : " (CUDA_VISIBLE_DEVICES=" + facts.visible_devices + ")";
    throw UserError(where, "device", "device: cuda, but no CUDA GPU is visible on this node" + visible,
                    "run on a GPU node (srun --gpus-per-task=1 / mpirun on GPU hosts), check "
                    "nvidia-smi and CUDA_VISIBLE_DEVICES, or set device: cpu");
  }
  // The model runs on the CUDA backend (model/cuda), but the trainer around it (the optimizer,
  // the data-parallel reductions, checkpoints) still reads parameters on the host: saying so
  // beats silently training on the CPU of a GPU node.
  throw UserError(where, "device",
                  "device: cuda: the trainer does not run on the GPU yet (the model's forward "
                  "and backward do, on the CUDA backend; the optimizer, the data-parallel "
                  "reductions and checkpoints are still host-only)",
                  "set device: cpu for now; scripts/gpu-check.sh tests the CUDA ops and the "
                  "model on this GPU");
}

}  // namespace baleine::train
