#pragma once
// `device:` in the YAML: where a run's math goes. cpu is always there; cuda needs the CUDA
// backend built in and a GPU on every rank's node. A run that asks for a device it cannot have
// stops before anything is allocated, with exit 2 and the reason (never a crash in the first
// kernel launch).
#include <string>

#include "trainer/config/config.h"

namespace baleine::train {

// What this process can offer for `device:` (the facts the check reads; a parameter so tests
// can describe any machine).
struct DeviceFacts {
  bool cuda_built = false;
  int gpus = 0;
  std::string visible_devices;  // $CUDA_VISIBLE_DEVICES, "" when unset
};
DeviceFacts this_process_devices();

// Throws UserError (key "device") when `config.device` cannot run with `facts`.
void require_device(const config::RunConfig& config, const DeviceFacts& facts);

}  // namespace baleine::train
