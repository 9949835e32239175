#pragma once
// The groups that move a model's buffers between ranks (gradients, DualPipe's mirrored
// gradients, ZeRO shards) when the buffers are not in host memory:
//   CUDA backend:        NCCL groups on the rank's GPU, cut from an NCCL world like the host
//                        groups are from MPI's (parallel/cuda/nccl_comm.h);
//   any other memory:    the host groups, staging each buffer through the host (StagedComm).
// On host memory, or on one rank, there are none: the host groups move everything.
//
// Scalars (losses, norms, counters) and the model's own traffic (pipeline hand-offs, expert
// exchange, which stage through the host in model/) stay on the host groups.
#include <memory>

#include "parallel/process_groups.h"
#include "trainer/config/config.h"
#include "trainer/model/backend.h"
#include "trainer/optim/data_parallel.h"

namespace baleine::train {

struct BufferGroups {
  std::unique_ptr<parallel::Comm> world;  // NCCL: the world the others were cut from
  parallel::SubGroups groups;
  const char* kind = "host";              // "host" | "nccl" | "host-staged", for the banner

  // Points `groups`' buffer_* members at these (leaves them null when there are none).
  void attach(optim::DataParallelGroups& data_parallel) const;
};

// Collective over the world. `gpu`: this rank's CUDA device (for NCCL), else -1.
BufferGroups make_buffer_groups(const config::RunConfig& config, parallel::ProcessGroups& g,
                                model::Backend& backend, int gpu);

}  // namespace baleine::train
