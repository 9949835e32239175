#include "trainer/train/device_groups.h"

#include <mpi.h>

#include "trainer/optim/staged_comm.h"
#if defined(BALEINE_HAVE_NCCL)
#include "parallel/cuda/nccl_comm.h"
#endif

namespace baleine::train {

void BufferGroups::attach(optim::DataParallelGroups& data_parallel) const {
  data_parallel.buffer_dp = groups.dp.get();
  data_parallel.buffer_expert_dp = groups.expert_dp.get();
  data_parallel.buffer_mirror = groups.mirror.get();
}

BufferGroups make_buffer_groups(const config::RunConfig& config, parallel::ProcessGroups& g,
                                model::Backend& backend, int gpu) {
  BufferGroups b;
  if (backend.memory->is_host() || g.world->size() == 1) return b;
#if defined(BALEINE_HAVE_NCCL)
  if (backend.name == "cuda" && gpu >= 0) {
    b.world = parallel::make_nccl_world(MPI_COMM_WORLD, gpu, config.parallel.timeout_s);
    b.groups = parallel::split_groups(*b.world, g.topology, config);
    b.kind = "nccl";
    return b;
  }
#else
  (void)config;
  (void)gpu;
#endif
  kernels::Memory& memory = *backend.memory;
  b.groups.dp = std::make_unique<optim::StagedComm>(*g.dp, memory);
  b.groups.expert_dp = std::make_unique<optim::StagedComm>(*g.expert_dp, memory);
  if (g.mirror) b.groups.mirror = std::make_unique<optim::StagedComm>(*g.mirror, memory);
  b.kind = "host-staged";
  return b;
}

}  // namespace baleine::train
