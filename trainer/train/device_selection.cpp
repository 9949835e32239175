#include "trainer/train/device_selection.h"

#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "kernels/device.h"
#include "trainer/errors.h"
#if defined(BALEINE_HAVE_CUDA)
#include "trainer/model/cuda/cuda_backend.h"
#endif

namespace baleine::train {

DeviceFacts this_process_devices(const parallel::ProcessInfo& process) {
  DeviceFacts facts;
  facts.ranks_on_node = process.local_size;
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
  if (facts.ranks_on_node > facts.gpus) {
    throw UserError(where, "device",
                    "device: cuda with " + std::to_string(facts.ranks_on_node) +
                        " ranks on this node but " + std::to_string(facts.gpus) +
                        " GPU(s): each rank needs a GPU of its own (NCCL cannot share one "
                        "between ranks)",
                    "start at most " + std::to_string(facts.gpus) +
                        " ranks per node (mpirun --map-by ppr:" + std::to_string(facts.gpus) +
                        ":node, srun --ntasks-per-node=" + std::to_string(facts.gpus) + ")");
  }
}

SelectedBackend select_backend(const config::RunConfig& config,
                               const parallel::ProcessInfo& process) {
  SelectedBackend selected;
  if (config.device != "cuda") {
    selected.backend = &model::cpu_backend();
    selected.description = "cpu";
    return selected;
  }
#if defined(BALEINE_HAVE_CUDA)
  const auto devices = kernels::cuda_devices();
  selected.gpu = parallel::gpu_for_local_rank(process.local_rank, static_cast<int>(devices.size()));
  model::use_cuda_device(selected.gpu);
  selected.backend = &model::cuda_backend();
  const auto& d = devices[static_cast<size_t>(selected.gpu)];
  selected.gpu_name = d.name;
  std::ostringstream text;
  text << "cuda:" << d.index << " (" << d.name << ", sm_" << d.sm_major << d.sm_minor << ", "
       << std::fixed << std::setprecision(1) << d.memory_gib << " GiB)";
  selected.description = text.str();
  return selected;
#else
  (void)process;
  throw std::logic_error("select_backend: device: cuda in a build without CUDA (require_device "
                         "refuses it first)");
#endif
}

}  // namespace baleine::train
