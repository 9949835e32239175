#pragma once
// One communication interface for every parallel algorithm in baleine. MpiComm implements it on
// host memory (the CPU backend, and what CI runs); NcclComm on device memory (CUDA builds).
// A Comm is a group of ranks: the world, or a sub-group made by split() (data-parallel,
// expert-parallel, expert-data-parallel, pipeline).
//
// Every collective call carries the group's sequence number (incremented identically on every
// member), and waits under a watchdog: a collective that does not complete within the timeout
// is reported -- group name, operation, sequence number, and the world ranks that have not
// entered it -- and the whole job is aborted with kExitCommTimeout. No silent hangs.
//
// Counts and offsets are in ELEMENTS of the given dtype. All calls are blocking except
// isend/irecv. Results of reductions are deterministic for a given group size and input.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace baleine::parallel {

constexpr int kExitCommTimeout = 3;  // process exit status after a collective timed out

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kByte };
size_t dtype_size(DType type);

// Seconds this process has spent inside collectives of any group (not point-to-point waits),
// since it started: the GPU-hour ledger's exposed communication (trainer/cost/segments.h).
double collective_seconds();

class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;  // under the watchdog, like a collective
};

class Comm {
 public:
  virtual ~Comm() = default;

  virtual const std::string& name() const = 0;          // "world", "dp", "ep", "expert_dp", ...
  virtual int rank() const = 0;                          // index within this group
  virtual int size() const = 0;
  virtual const std::vector<int>& world_ranks() const = 0;  // world rank of each member
  virtual uint64_t sequence() const = 0;                 // collectives issued so far

  // data[i] = Σ over members of data[i]. kFloat32, kFloat64, kInt32, kInt64.
  virtual void allreduce_sum(void* data, int64_t count, DType type) = 0;
  // send holds size()·count_per_rank elements; recv gets this rank's block of the sum.
  virtual void reduce_scatter_sum(const void* send, void* recv, int64_t count_per_rank,
                                  DType type) = 0;
  // recv (size()·count_per_rank elements) = the members' send blocks in rank order.
  virtual void allgather(const void* send, void* recv, int64_t count_per_rank, DType type) = 0;
  // Block r of send goes to member r; block r of recv comes from member r.
  virtual void alltoall(const void* send, void* recv, int64_t count_per_rank, DType type) = 0;
  // Variable-size blocks: send_counts/offsets[r] describe what goes to member r,
  // recv_counts/offsets[r] what comes from member r. Zero counts are normal.
  virtual void alltoallv(const void* send, const int64_t* send_counts,
                         const int64_t* send_offsets, void* recv, const int64_t* recv_counts,
                         const int64_t* recv_offsets, DType type) = 0;
  virtual void broadcast(void* data, int64_t count, DType type, int root) = 0;
  virtual void barrier() = 0;

  // Point-to-point with a member of this group (peer = group rank).
  virtual std::unique_ptr<Request> isend(const void* data, int64_t count, DType type, int peer,
                                         int tag) = 0;
  virtual std::unique_ptr<Request> irecv(void* data, int64_t count, DType type, int peer,
                                         int tag) = 0;

  // Collective over this group: members passing the same color form one new group, ordered
  // by key (then by rank here). The new group inherits the timeout.
  virtual std::unique_ptr<Comm> split(int color, int key, const std::string& name) = 0;
};

// What every implementation keeps about its group, behind Comm's identity accessors. An
// implementation sets rank_, size_ and world_ranks_ in its constructor and increments
// sequence_ once per collective.
class CommGroupState : public Comm {
 public:
  const std::string& name() const override { return name_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  uint64_t sequence() const override { return sequence_; }

 protected:
  explicit CommGroupState(std::string name) : name_(std::move(name)) {}
  std::string name_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;
  uint64_t sequence_ = 0;
};

// The world group over MPI_COMM_WORLD, on host memory. MPI must be initialised (MpiRuntime).
// timeout_s bounds every wait (collectives and point-to-point).
std::unique_ptr<Comm> make_mpi_world(double timeout_s);

}  // namespace baleine::parallel
