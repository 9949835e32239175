// MpiComm: the Comm contract (parallel/comm.h) over an MPI communicator, on host memory.
//
// Every operation is issued non-blocking (MPI_I*) and then polled by the group's Watchdog
// (parallel/watchdog.h), which announces each collective to the other members and aborts the
// job with a message naming the missing ranks when a wait exceeds the timeout. Reductions are
// MPI's own: deterministic for a given group size, count and input.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm.h"
#include "parallel/watchdog.h"

namespace baleine::parallel {

size_t dtype_size(DType type) {
  switch (type) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kByte: return 1;
  }
  throw std::invalid_argument("dtype_size: unknown DType");
}

namespace {

// Nanoseconds inside collectives; atomic because a deferred weight-gradient job or a watchdog
// thread may one day call from another thread (today only the training thread does).
std::atomic<int64_t> collective_nanoseconds{0};

// The one place where baleine's DType meets MPI's datatypes.
MPI_Datatype mpi_datatype(DType type) {
  switch (type) {
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kByte: return MPI_BYTE;
  }
  throw std::invalid_argument("mpi_datatype: unknown DType");
}

const char* dtype_name(DType type) {
  switch (type) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kByte: return "byte";
  }
  return "unknown";
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// An isend/irecv in flight. It borrows its group's Watchdog: wait on (or drop) every Request
// before the Comm that made it is destroyed.
class MpiRequest final : public Request {
 public:
  MpiRequest(Watchdog* watchdog, bool is_receive, std::string what, int peer, int tag)
      : watchdog_(watchdog), is_receive_(is_receive), what_(std::move(what)), peer_(peer),
        tag_(tag) {}

  ~MpiRequest() override {
    if (request_ == MPI_REQUEST_NULL || mpi_finalized()) return;
    // Dropped without wait() (usually while an exception unwinds). Waiting here could hang
    // the unwinding, so let go: a receive is cancelled before it can write into a buffer that
    // is about to disappear; a send is released (MPI completes it on its own).
    if (is_receive_) {
      MPI_Cancel(&request_);
      MPI_Wait(&request_, MPI_STATUS_IGNORE);
    } else {
      MPI_Request_free(&request_);
    }
  }

  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    watchdog_->wait_point_to_point(&request_, what_, peer_, tag_);
  }

  MPI_Request* handle() { return &request_; }

 private:
  Watchdog* watchdog_;
  bool is_receive_;
  std::string what_;
  int peer_;
  int tag_;
  MPI_Request request_ = MPI_REQUEST_NULL;
};

class MpiComm final : public CommGroupState {
 public:
  // Takes ownership of `comm` (freed on destruction).
  MpiComm(MPI_Comm comm, std::string name, double timeout_s)
      : CommGroupState(std::move(name)), comm_(comm), timeout_s_(timeout_s) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Group group, world;
    MPI_Comm_group(comm_, &group);
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    std::vector<int> members(static_cast<size_t>(size_));
    std::iota(members.begin(), members.end(), 0);
    world_ranks_.resize(members.size());
    MPI_Group_translate_ranks(group, size_, members.data(), world, world_ranks_.data());
    MPI_Group_free(&group);
    MPI_Group_free(&world);
    watchdog_ = std::make_unique<Watchdog>(comm_, name_, world_ranks_, timeout_s_);
  }

  ~MpiComm() override {
    if (mpi_finalized()) return;
    watchdog_.reset();  // drains the arrival channel before the group goes away
    MPI_Comm_free(&comm_);
  }

  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  void allreduce_sum(void* data, int64_t count, DType type) override {
    const int n = mpi_count(count, "count", "allreduce");
    require_summable(type, "allreduce");
    run_collective("allreduce", [&](MPI_Request* request) {
      MPI_Iallreduce(MPI_IN_PLACE, data, n, mpi_datatype(type), MPI_SUM, comm_, request);
    });
  }

  void reduce_scatter_sum(const void* send, void* recv, int64_t count_per_rank,
                          DType type) override {
    const int n = per_rank_count(count_per_rank, "reduce_scatter");
    require_summable(type, "reduce_scatter");
    run_collective("reduce_scatter", [&](MPI_Request* request) {
      MPI_Ireduce_scatter_block(send, recv, n, mpi_datatype(type), MPI_SUM, comm_, request);
    });
  }

  void allgather(const void* send, void* recv, int64_t count_per_rank, DType type) override {
    const int n = per_rank_count(count_per_rank, "allgather");
    run_collective("allgather", [&](MPI_Request* request) {
      MPI_Iallgather(send, n, mpi_datatype(type), recv, n, mpi_datatype(type), comm_, request);
    });
  }

  void alltoall(const void* send, void* recv, int64_t count_per_rank, DType type) override {
    const int n = per_rank_count(count_per_rank, "alltoall");
    run_collective("alltoall", [&](MPI_Request* request) {
      MPI_Ialltoall(send, n, mpi_datatype(type), recv, n, mpi_datatype(type), comm_, request);
    });
  }

  void alltoallv(const void* send, const int64_t* send_counts, const int64_t* send_offsets,
                 void* recv, const int64_t* recv_counts, const int64_t* recv_offsets,
                 DType type) override {
    // MPI_Ialltoallv takes int counts and displacements. Checked (and converted) before the
    // collective is announced, so a bad size throws on this rank without unmatching the group.
    const auto to_ints = [&](const int64_t* values, const char* what) {
      std::vector<int> ints(static_cast<size_t>(size_));
      for (int r = 0; r < size_; ++r) ints[r] = mpi_count(values[r], what, "alltoallv");
      return ints;
    };
    const std::vector<int> scounts = to_ints(send_counts, "send_counts");
    const std::vector<int> soffsets = to_ints(send_offsets, "send_offsets");
    const std::vector<int> rcounts = to_ints(recv_counts, "recv_counts");
    const std::vector<int> roffsets = to_ints(recv_offsets, "recv_offsets");
    run_collective("alltoallv", [&](MPI_Request* request) {
      MPI_Ialltoallv(send, scounts.data(), soffsets.data(), mpi_datatype(type), recv,
                     rcounts.data(), roffsets.data(), mpi_datatype(type), comm_, request);
    });
  }

  void broadcast(void* data, int64_t count, DType type, int root) override {
    const int n = mpi_count(count, "count", "broadcast");
    require_member(root, "broadcast root");
    run_collective("broadcast", [&](MPI_Request* request) {
      MPI_Ibcast(data, n, mpi_datatype(type), root, comm_, request);
    });
  }

  void barrier() override {
    run_collective("barrier", [&](MPI_Request* request) { MPI_Ibarrier(comm_, request); });
  }

  std::unique_ptr<Request> isend(const void* data, int64_t count, DType type, int peer,
                                 int tag) override {
    return point_to_point(const_cast<void*>(data), count, type, peer, tag, false);
  }

  std::unique_ptr<Request> irecv(void* data, int64_t count, DType type, int peer,
                                 int tag) override {
    return point_to_point(data, count, type, peer, tag, true);
  }

  std::unique_ptr<Comm> split(int color, int key, const std::string& name) override {
    if (color < 0) {
      throw std::invalid_argument("split of " + watchdog_->describe_group() + " into '" + name +
                                  "': color must be >= 0, got " + std::to_string(color));
    }
    // MPI_Comm_split blocks and has no non-blocking form. A watched barrier first proves every
    // member has arrived, so the blocking split that follows cannot wait on a missing one.
    run_collective("split into '" + name + "'",
                   [&](MPI_Request* request) { MPI_Ibarrier(comm_, request); });
    MPI_Comm part = MPI_COMM_NULL;
    MPI_Comm_split(comm_, color, key, &part);
    return std::make_unique<MpiComm>(part, name, timeout_s_);
  }

 private:
  template <class Start>
  void run_collective(const std::string& operation, Start start) {
    const auto begin = std::chrono::steady_clock::now();
    ++sequence_;
    watchdog_->announce(sequence_);
    MPI_Request request = MPI_REQUEST_NULL;
    start(&request);
    watchdog_->wait_collective(&request, operation, sequence_);
    collective_nanoseconds += std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now() - begin)
                                  .count();
  }

  std::unique_ptr<Request> point_to_point(void* data, int64_t count, DType type, int peer,
                                          int tag, bool is_receive) {
    const char* operation = is_receive ? "irecv" : "isend";
    const int n = mpi_count(count, "count", operation);
    require_member(peer, std::string(operation) + " peer");
    if (tag < 0) {
      throw std::invalid_argument(std::string(operation) + " on " +
                                  watchdog_->describe_group() + ": tag must be >= 0, got " +
                                  std::to_string(tag));
    }
    std::string what = std::string(is_receive ? "recv of " : "send of ") + std::to_string(count) +
                       " " + dtype_name(type) + (is_receive ? " from" : " to");
    auto request = std::make_unique<MpiRequest>(watchdog_.get(), is_receive, std::move(what),
                                                peer, tag);
    if (is_receive) {
      MPI_Irecv(data, n, mpi_datatype(type), peer, tag, comm_, request->handle());
    } else {
      MPI_Isend(data, n, mpi_datatype(type), peer, tag, comm_, request->handle());
    }
    return request;
  }

  // A count or offset as MPI's int. Throws before anything is issued.
  int mpi_count(int64_t value, const std::string& what, const std::string& operation) const {
    if (value < 0) {
      throw std::invalid_argument(operation + " on " + watchdog_->describe_group() + ": " +
                                  what + " must be >= 0, got " + std::to_string(value));
    }
    if (value > INT_MAX) {
      throw std::overflow_error(operation + " on " + watchdog_->describe_group() + ": " + what +
                                " = " + std::to_string(value) +
                                " exceeds MPI's int count limit (" + std::to_string(INT_MAX) +
                                "); split the transfer into smaller pieces");
    }
    return static_cast<int>(value);
  }

  // Per-rank counts of the block collectives: the whole buffer (size()·count) must also fit,
  // since MPI implementations index it with int.
  int per_rank_count(int64_t count_per_rank, const std::string& operation) const {
    const int n = mpi_count(count_per_rank, "count_per_rank", operation);
    mpi_count(count_per_rank * size_, "the total count (size()·count_per_rank)", operation);
    return n;
  }

  void require_summable(DType type, const std::string& operation) const {
    if (type == DType::kByte) {
      throw std::invalid_argument(operation + " on " + watchdog_->describe_group() +
                                  ": bytes cannot be summed; use a numeric DType");
    }
  }

  void require_member(int member, const std::string& what) const {
    if (member < 0 || member >= size_) {
      throw std::invalid_argument(what + " " + std::to_string(member) + " is not a member of " +
                                  watchdog_->describe_group() + " (size " +
                                  std::to_string(size_) + ")");
    }
  }

  MPI_Comm comm_;
  double timeout_s_;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Comm> make_mpi_world(double timeout_s) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw std::logic_error("make_mpi_world: MPI is not initialised (MpiRuntime)");
  if (!(timeout_s > 0)) {
    throw std::invalid_argument("make_mpi_world: timeout_s must be > 0, got " +
                                std::to_string(timeout_s));
  }
  // A private duplicate: the world group's traffic never matches anyone else's on
  // MPI_COMM_WORLD (the test harness's final allreduce, a library's own messages).
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  return std::make_unique<MpiComm>(world, "world", timeout_s);
}

double collective_seconds() { return 1e-9 * static_cast<double>(collective_nanoseconds.load()); }

}  // namespace baleine::parallel
