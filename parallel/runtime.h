#pragma once
// The process's place in the job. baleine runs under `mpirun -np N`, under `srun`, or as one
// plain process (MPI singleton: world size 1, no launcher needed).
#include <string>

namespace baleine::parallel {

struct ProcessInfo {
  int rank = 0;
  int world = 1;
  int local_rank = 0;   // rank within the node (selects the GPU)
  int local_size = 1;
  std::string host;
};

// The GPU a rank drives: ranks map to a node's GPUs by local rank (round-robin when there are
// more ranks than GPUs, which NCCL cannot use: one rank per GPU). -1 without GPUs.
inline int gpu_for_local_rank(int local_rank, int gpus_on_node) {
  return gpus_on_node > 0 ? local_rank % gpus_on_node : -1;
}

// Owns MPI initialisation and finalisation for the program's lifetime.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  const ProcessInfo& info() const { return info_; }
  // Tears the whole job down (every rank) with `code`; used when one rank hits a fatal error.
  [[noreturn]] void abort(int code) const;

 private:
  ProcessInfo info_;
};

}  // namespace baleine::parallel
