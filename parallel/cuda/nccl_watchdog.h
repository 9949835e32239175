#pragma once
// The watchdog every blocking NcclComm call and every Request::wait goes through: the host waits
// for an event recorded after the NCCL operation, polling it so that a hang becomes a clear
// error and a job abort instead of a process stuck in cudaEventSynchronize forever.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <string>

namespace baleine::parallel {

// What is being waited for: everything the error message needs to name it.
struct WatchedOperation {
  const std::string& group;  // "world", "dp", ...
  int group_rank;
  int group_size;
  int world_rank;
  const char* operation;     // "allreduce_sum", "isend", ...
  int peer;                  // group rank of the peer for point-to-point, -1 for collectives
  uint64_t sequence;         // the group's collective number (point-to-point: the last issued)
};

// Returns once `done` has completed. While waiting, polls the communicator's asynchronous error
// state too. On timeout, or on an asynchronous NCCL error, prints what was pending, aborts the
// communicator and calls MPI_Abort on MPI_COMM_WORLD (kExitCommTimeout, or 1 for an error).
void wait_under_watchdog(cudaEvent_t done, ncclComm_t comm, double timeout_s,
                         const WatchedOperation& what);

}  // namespace baleine::parallel
