#include "parallel/cuda/nccl_watchdog.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "parallel/comm.h"
#include "parallel/cuda/device_check.h"

namespace baleine::parallel {
namespace {

using Clock = std::chrono::steady_clock;

// Most collectives finish within a millisecond; yielding keeps their latency low. Past that the
// wait is long anyway, and sleeping keeps a waiting rank from burning a core the data loader or
// the other ranks on the node could use.
constexpr auto kSpinPhase = std::chrono::milliseconds(1);
constexpr auto kSleepBetweenPolls = std::chrono::microseconds(100);

std::string describe(const WatchedOperation& what) {
  std::string text = "rank " + std::to_string(what.world_rank) + " (group '" + what.group +
                     "', rank " + std::to_string(what.group_rank) + " of " +
                     std::to_string(what.group_size) + "): " + what.operation;
  if (what.peer >= 0) {
    text += " with group rank " + std::to_string(what.peer) + " (after collective #" +
            std::to_string(what.sequence) + ")";
  } else {
    text += " #" + std::to_string(what.sequence);
  }
  return text;
}

// Ends the whole job. ncclCommAbort first: it stops this rank's stuck NCCL kernels, so the
// process can exit even though the GPU work never completed.
[[noreturn]] void abort_job(ncclComm_t comm, int exit_code) {
  std::fflush(stderr);
  BALEINE_NCCL_WARN(ncclCommAbort(comm));
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);  // MPI_Abort does not return; this satisfies [[noreturn]]
}

}  // namespace

void wait_under_watchdog(cudaEvent_t done, ncclComm_t comm, double timeout_s,
                         const WatchedOperation& what) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(timeout_s));
  for (;;) {
    const cudaError_t state = cudaEventQuery(done);
    if (state == cudaSuccess) return;
    if (state != cudaErrorNotReady) {
      std::fprintf(stderr, "baleine: %s failed on the GPU: %s\n", describe(what).c_str(),
                   cudaGetErrorString(state));
      abort_job(comm, EXIT_FAILURE);
    }
    ncclResult_t async_error = ncclSuccess;
    BALEINE_NCCL_CHECK(ncclCommGetAsyncError(comm, &async_error));
    if (async_error != ncclSuccess && async_error != ncclInProgress) {
      std::fprintf(stderr,
                   "baleine: %s: NCCL reported an asynchronous error: %s\n"
                   "HINT: a network or peer failure; the other ranks' logs name the cause. "
                   "NCCL_DEBUG=WARN prints NCCL's own diagnosis.\n",
                   describe(what).c_str(), detail::nccl_error_text(async_error).c_str());
      abort_job(comm, EXIT_FAILURE);
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      std::fprintf(stderr,
                   "baleine: %s did not complete within %.0f s.\n"
                   "NCCL does not report which rank is missing; check the other ranks' logs "
                   "for the last operation each reached in group '%s'.\n"
                   "HINT: a rank that crashed, hangs in other work, or issued the group's "
                   "operations in a different order; raise the timeout only if one operation "
                   "legitimately takes this long.\n",
                   describe(what).c_str(), timeout_s, what.group.c_str());
      abort_job(comm, kExitCommTimeout);
    }
    if (now - start < kSpinPhase) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(kSleepBetweenPolls);
    }
  }
}

}  // namespace baleine::parallel
