#pragma once
// `device:` in the YAML: where a run's math goes. cpu is always there; cuda needs the CUDA
// backend built in and a GPU for every rank of a node (one rank per GPU: NCCL cannot share
// one). A run that asks for a device it cannot have stops before anything is allocated, with
// exit 2 and the reason (never a crash in the first kernel launch).
#include <string>

#include "parallel/runtime.h"
#include "trainer/config/config.h"
#include "trainer/model/backend.h"

namespace baleine::train {

// What this process can offer for `device:` (the facts the check reads; a parameter so tests
// can describe any machine).
struct DeviceFacts {
  bool cuda_built = false;
  int gpus = 0;
  std::string visible_devices;  // $CUDA_VISIBLE_DEVICES, "" when unset
  int ranks_on_node = 1;        // ranks of this job on this process's node
};
DeviceFacts this_process_devices(const parallel::ProcessInfo& process);

// Throws UserError (key "device") when `config.device` cannot run with `facts`.
void require_device(const config::RunConfig& config, const DeviceFacts& facts);

// The backend `device:` gives this rank (after require_device): the CPU's, or the CUDA backend
// on GPU gpu_for_local_rank(local rank), made this process's current device.
struct SelectedBackend {
  model::Backend* backend = nullptr;
  int gpu = -1;             // the CUDA device, or -1
  std::string description;  // "cpu" | "cuda:0 (NVIDIA H200, sm_90, 139.8 GiB)"
  std::string gpu_name;     // "NVIDIA H200", or ""
};
SelectedBackend select_backend(const config::RunConfig& config,
                               const parallel::ProcessInfo& process);

}  // namespace baleine::train
