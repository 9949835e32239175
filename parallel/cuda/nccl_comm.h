#pragma once
// NcclComm: the Comm interface (parallel/comm.h) on GPU memory, built on NCCL. Compiled only in
// CUDA builds (BALEINE_HAVE_NCCL); MPI carries the setup (the NCCL unique id, the world ranks of
// a sub-group) and NCCL the data.
//
// What differs from MpiComm, and what callers must know:
// - Every data pointer is DEVICE memory of the comm's GPU.
// - Each comm owns one CUDA stream. A call first makes that stream wait for the work already
//   queued on the legacy default stream, so inputs written by kernels there are complete.
//   Inputs written on any other stream must be synchronised by the caller before the call.
// - Blocking calls return once the GPU has finished the operation, so outputs are usable on
//   any stream afterwards.
// - isend/irecv are ncclSend/ncclRecv on the comm's stream. NCCL point-to-point is blocking on
//   the GPU and ignores `tag`: a send completes only when the peer's matching receive (same
//   count and type) runs, and operations on one comm run in the order they were issued. So
//   every pair of ranks must issue its sends and receives in matching order (in an exchange,
//   one side sends first while the other receives first), or the stream deadlocks and the
//   watchdog aborts the job. For the same reason NCCL refuses point-to-point with oneself
//   outside a group ("invalid usage", thrown here; seen with NCCL 2.28).
//   A pending isend/irecv also delays every later collective of the same comm.
// - The watchdog: a wait that exceeds the timeout prints the group, the operation and its
//   sequence number, then aborts the communicator and the job (kExitCommTimeout). Unlike MPI,
//   NCCL cannot say which rank never arrived; the message says to compare the other ranks' logs.
//   The watchdog covers the GPU side of an operation; a rank that never calls ncclCommInitRank
//   or ncclCommSplit blocks its peers there under NCCL's own bootstrap timeout instead.
// - A CUDA or NCCL error throws std::runtime_error naming the call, file:line and the library's
//   error string; an asynchronous NCCL error seen while waiting aborts the job (exit status 1).
#include <mpi.h>

#include <memory>

#include "parallel/comm.h"

namespace baleine::parallel {

// The world group on `world` (normally MPI_COMM_WORLD, which must be initialised), on CUDA
// device `device` of this process (made current). Collective over `world`: rank 0 creates the
// NCCL unique id and broadcasts it. timeout_s (> 0) bounds every wait, in sub-groups too.
std::unique_ptr<Comm> make_nccl_world(MPI_Comm world, int device, double timeout_s);

}  // namespace baleine::parallel
