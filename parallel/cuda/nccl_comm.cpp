#include "parallel/cuda/nccl_comm.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel/cuda/device_check.h"
#include "parallel/cuda/nccl_watchdog.h"

namespace baleine::parallel {
namespace {

// The one place DType meets NCCL: the wire type, and the element size for pointer offsets.
struct NcclElement {
  ncclDataType_t type;
  size_t bytes;
};

NcclElement nccl_element(DType type) {
  switch (type) {
    case DType::kFloat32: return {ncclFloat32, dtype_size(type)};
    case DType::kFloat64: return {ncclFloat64, dtype_size(type)};
    case DType::kInt32: return {ncclInt32, dtype_size(type)};
    case DType::kInt64: return {ncclInt64, dtype_size(type)};
    case DType::kByte: return {ncclUint8, dtype_size(type)};
  }
  throw std::invalid_argument("NcclComm: unknown DType");
}

// Summing bytes is not a reduction the contract offers (it would wrap silently).
NcclElement summable_element(DType type, const char* operation) {
  if (type == DType::kByte) {
    throw std::invalid_argument(std::string("NcclComm::") + operation +
                                ": kByte cannot be summed; use an integer or float type");
  }
  return nccl_element(type);
}

size_t element_count(int64_t count, const char* operation) {
  if (count < 0) {
    throw std::invalid_argument(std::string("NcclComm::") + operation + ": negative count " +
                                std::to_string(count));
  }
  return static_cast<size_t>(count);
}

const void* at_offset(const void* base, int64_t offset, size_t bytes) {
  return static_cast<const char*>(base) + static_cast<size_t>(offset) * bytes;
}
void* at_offset(void* base, int64_t offset, size_t bytes) {
  return static_cast<char*>(base) + static_cast<size_t>(offset) * bytes;
}

// Rank 0 of `group` creates the id that names the new NCCL communicator; MPI carries it to the
// others (NCCL has no bootstrap of its own before a communicator exists).
ncclComm_t init_with_fresh_unique_id(MPI_Comm group) {
  int rank = 0, size = 1;
  MPI_Comm_rank(group, &rank);
  MPI_Comm_size(group, &size);
  ncclUniqueId id{};
  if (rank == 0) BALEINE_NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, group);
  ncclComm_t comm = nullptr;
  BALEINE_NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
  return comm;
}

// A pending ncclSend/ncclRecv: an event recorded after it on the comm's stream.
class NcclRequest final : public Request {
 public:
  NcclRequest(ncclComm_t comm, cudaStream_t stream, double timeout_s, std::string group,
              int group_rank, int group_size, int world_rank, const char* operation, int peer,
              uint64_t sequence)
      : comm_(comm), timeout_s_(timeout_s), group_(std::move(group)), group_rank_(group_rank),
        group_size_(group_size), world_rank_(world_rank), operation_(operation), peer_(peer),
        sequence_(sequence) {
    BALEINE_CUDA_CALL(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    BALEINE_CUDA_CALL(cudaEventRecord(done_, stream));
  }
  ~NcclRequest() override { BALEINE_CUDA_CALL_WARN(cudaEventDestroy(done_)); }
  NcclRequest(const NcclRequest&) = delete;
  NcclRequest& operator=(const NcclRequest&) = delete;

  void wait() override {
    wait_under_watchdog(done_, comm_, timeout_s_,
                        {group_, group_rank_, group_size_, world_rank_, operation_, peer_,
                         sequence_});
  }

 private:
  ncclComm_t comm_;  // borrowed: the Comm must outlive its requests
  cudaEvent_t done_ = nullptr;
  double timeout_s_;
  std::string group_;
  int group_rank_, group_size_, world_rank_;
  const char* operation_;
  int peer_;
  uint64_t sequence_;
};

class NcclComm final : public CommGroupState {
 public:
  // Takes ownership of `group` (an MPI communicator with the same members in the same order as
  // `comm`) and of `comm`.
  NcclComm(std::string name, MPI_Comm group, ncclComm_t comm, int device, double timeout_s)
      : CommGroupState(std::move(name)), group_(group), comm_(comm), device_(device),
        timeout_s_(timeout_s) {
    MPI_Comm_rank(group_, &rank_);
    MPI_Comm_size(group_, &size_);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    world_ranks_.resize(static_cast<size_t>(size_));
    MPI_Allgather(&world_rank_, 1, MPI_INT, world_ranks_.data(), 1, MPI_INT, group_);
    // world_ranks() is taken from MPI; it is only right if NCCL ordered the members the same way.
    int nccl_rank = -1, nccl_size = -1;
    BALEINE_NCCL_CHECK(ncclCommUserRank(comm_, &nccl_rank));
    BALEINE_NCCL_CHECK(ncclCommCount(comm_, &nccl_size));
    if (nccl_rank != rank_ || nccl_size != size_) {
      throw std::logic_error("NcclComm '" + name_ + "': NCCL rank " + std::to_string(nccl_rank) +
                             "/" + std::to_string(nccl_size) + " differs from MPI rank " +
                             std::to_string(rank_) + "/" + std::to_string(size_));
    }
    // Non-blocking: kernels on the legacy default stream do not wait behind a pending isend;
    // the dependency the other way is made explicit in wait_for_inputs().
    BALEINE_CUDA_CALL(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BALEINE_CUDA_CALL(cudaEventCreateWithFlags(&inputs_ready_, cudaEventDisableTiming));
    BALEINE_CUDA_CALL(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    BALEINE_CUDA_CALL(cudaMalloc(&barrier_token_, sizeof(int)));
    BALEINE_CUDA_CALL(cudaMemset(barrier_token_, 0, sizeof(int)));
  }

  ~NcclComm() override {
    // A clean destroy flushes pending work, which would hang on an isend whose peer is gone
    // (or while unwinding from an error); abort instead when work is still queued.
    if (cudaStreamQuery(stream_) == cudaSuccess) {
      BALEINE_NCCL_WARN(ncclCommDestroy(comm_));
    } else {
      std::fprintf(stderr, "baleine: warning: group '%s' destroyed with NCCL work pending; "
                           "aborting its communicator\n", name_.c_str());
      BALEINE_NCCL_WARN(ncclCommAbort(comm_));
    }
    BALEINE_CUDA_CALL_WARN(cudaFree(barrier_token_));
    BALEINE_CUDA_CALL_WARN(cudaEventDestroy(done_));
    BALEINE_CUDA_CALL_WARN(cudaEventDestroy(inputs_ready_));
    BALEINE_CUDA_CALL_WARN(cudaStreamDestroy(stream_));
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&group_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  void allreduce_sum(void* data, int64_t count, DType type) override {
    const NcclElement element = summable_element(type, "allreduce_sum");
    const size_t n = element_count(count, "allreduce_sum");
    const uint64_t number = ++sequence_;
    if (n == 0) return;  // every member passes the same count, so all skip together
    wait_for_inputs();
    BALEINE_NCCL_CHECK(ncclAllReduce(data, data, n, element.type, ncclSum, comm_, stream_));
    wait_for_completion("allreduce_sum", number);
  }

  void reduce_scatter_sum(const void* send, void* recv, int64_t count_per_rank,
                          DType type) override {
    const NcclElement element = summable_element(type, "reduce_scatter_sum");
    const size_t n = element_count(count_per_rank, "reduce_scatter_sum");
    const uint64_t number = ++sequence_;
    if (n == 0) return;
    wait_for_inputs();
    // NCCL's count here is the per-rank (received) count, as in the contract.
    BALEINE_NCCL_CHECK(ncclReduceScatter(send, recv, n, element.type, ncclSum, comm_, stream_));
    wait_for_completion("reduce_scatter_sum", number);
  }

  void allgather(const void* send, void* recv, int64_t count_per_rank, DType type) override {
    const NcclElement element = nccl_element(type);
    const size_t n = element_count(count_per_rank, "allgather");
    const uint64_t number = ++sequence_;
    if (n == 0) return;
    wait_for_inputs();
    BALEINE_NCCL_CHECK(ncclAllGather(send, recv, n, element.type, comm_, stream_));
    wait_for_completion("allgather", number);
  }

  void alltoall(const void* send, void* recv, int64_t count_per_rank, DType type) override {
    element_count(count_per_rank, "alltoall");
    std::vector<int64_t> counts(static_cast<size_t>(size_), count_per_rank);
    std::vector<int64_t> offsets(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) offsets[static_cast<size_t>(r)] = r * count_per_rank;
    exchange_blocks("alltoall", send, counts.data(), offsets.data(), recv, counts.data(),
                    offsets.data(), type);
  }

  void alltoallv(const void* send, const int64_t* send_counts, const int64_t* send_offsets,
                 void* recv, const int64_t* recv_counts, const int64_t* recv_offsets,
                 DType type) override {
    exchange_blocks("alltoallv", send, send_counts, send_offsets, recv, recv_counts,
                    recv_offsets, type);
  }

  void broadcast(void* data, int64_t count, DType type, int root) override {
    const NcclElement element = nccl_element(type);
    const size_t n = element_count(count, "broadcast");
    check_member(root, "broadcast", "root");
    const uint64_t number = ++sequence_;
    if (n == 0) return;
    wait_for_inputs();
    BALEINE_NCCL_CHECK(ncclBroadcast(data, data, n, element.type, root, comm_, stream_));
    wait_for_completion("broadcast", number);
  }

  void barrier() override { wait_until_all_arrive("barrier", ++sequence_); }

  // `tag` is accepted for the interface and ignored: NCCL matches point-to-point by order only.
  std::unique_ptr<Request> isend(const void* data, int64_t count, DType type, int peer,
                                 int /*tag*/) override {
    const NcclElement element = nccl_element(type);
    const size_t n = element_count(count, "isend");
    check_member(peer, "isend", "peer");
    if (n > 0) {
      wait_for_inputs();
      BALEINE_NCCL_CHECK(ncclSend(data, n, element.type, peer, comm_, stream_));
    }
    return make_request("isend", peer);
  }

  std::unique_ptr<Request> irecv(void* data, int64_t count, DType type, int peer,
                                 int /*tag*/) override {
    const NcclElement element = nccl_element(type);
    const size_t n = element_count(count, "irecv");
    check_member(peer, "irecv", "peer");
    if (n > 0) {
      // The receive buffer may still be read by earlier kernels on the default stream.
      wait_for_inputs();
      BALEINE_NCCL_CHECK(ncclRecv(data, n, element.type, peer, comm_, stream_));
    }
    return make_request("irecv", peer);
  }

  std::unique_ptr<Comm> split(int color, int key, const std::string& name) override {
    if (color < 0) {
      throw std::invalid_argument("NcclComm::split: color must be >= 0, got " +
                                  std::to_string(color));
    }
    // MPI_Comm_split and ncclCommSplit block with no deadline; a watched barrier first proves
    // every member has arrived, so a missing one is reported instead of hanging the split.
    wait_until_all_arrive("split", ++sequence_);
    // The MPI side orders members by (key, parent rank), exactly as NCCL does; the NcclComm
    // constructor verifies that the two agree.
    MPI_Comm sub_group = MPI_COMM_NULL;
    MPI_Comm_split(group_, color, key, &sub_group);
    ncclComm_t sub_comm = nullptr;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
    // Reuses the parent's bootstrap: no new unique id, and the child inherits its config.
    BALEINE_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub_comm, nullptr));
#else
    sub_comm = init_with_fresh_unique_id(sub_group);
#endif
    return std::make_unique<NcclComm>(name, sub_group, sub_comm, device_, timeout_s_);
  }

 private:
  void check_member(int rank, const char* operation, const char* role) const {
    if (rank < 0 || rank >= size_) {
      throw std::invalid_argument("NcclComm::" + std::string(operation) + " in group '" + name_ +
                                  "': " + role + " " + std::to_string(rank) +
                                  " is not a group rank (size " + std::to_string(size_) + ")");
    }
  }

  // NCCL has no barrier; a one-element allreduce cannot finish before every member joined.
  void wait_until_all_arrive(const char* operation, uint64_t number) {
    BALEINE_NCCL_CHECK(
        ncclAllReduce(barrier_token_, barrier_token_, 1, ncclInt32, ncclSum, comm_, stream_));
    wait_for_completion(operation, number);
  }

  // Orders this comm's stream after the work already queued on the legacy default stream.
  void wait_for_inputs() {
    BALEINE_CUDA_CALL(cudaEventRecord(inputs_ready_, cudaStreamLegacy));
    BALEINE_CUDA_CALL(cudaStreamWaitEvent(stream_, inputs_ready_, 0));
  }

  void wait_for_completion(const char* operation, uint64_t number) {
    BALEINE_CUDA_CALL(cudaEventRecord(done_, stream_));
    wait_under_watchdog(done_, comm_, timeout_s_,
                        {name_, rank_, size_, world_rank_, operation, -1, number});
  }

  std::unique_ptr<Request> make_request(const char* operation, int peer) {
    return std::make_unique<NcclRequest>(comm_, stream_, timeout_s_, name_, rank_, size_,
                                         world_rank_, operation, peer, sequence_);
  }

  // alltoall and alltoallv: one ncclSend and one ncclRecv per peer with data, fused into one
  // NCCL group so that all of them progress together (sequentially they would deadlock).
  void exchange_blocks(const char* operation, const void* send, const int64_t* send_counts,
                       const int64_t* send_offsets, void* recv, const int64_t* recv_counts,
                       const int64_t* recv_offsets, DType type) {
    const NcclElement element = nccl_element(type);
    for (int r = 0; r < size_; ++r) {
      element_count(send_counts[r], operation);
      element_count(send_offsets[r], operation);
      element_count(recv_counts[r], operation);
      element_count(recv_offsets[r], operation);
    }
    const uint64_t number = ++sequence_;
    wait_for_inputs();
    BALEINE_NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < size_; ++r) {
      if (send_counts[r] > 0) {
        BALEINE_NCCL_CHECK(ncclSend(at_offset(send, send_offsets[r], element.bytes),
                                    static_cast<size_t>(send_counts[r]), element.type, r, comm_,
                                    stream_));
      }
      if (recv_counts[r] > 0) {
        BALEINE_NCCL_CHECK(ncclRecv(at_offset(recv, recv_offsets[r], element.bytes),
                                    static_cast<size_t>(recv_counts[r]), element.type, r, comm_,
                                    stream_));
      }
    }
    BALEINE_NCCL_CHECK(ncclGroupEnd());
    wait_for_completion(operation, number);
  }

  MPI_Comm group_;
  ncclComm_t comm_;
  int device_;
  double timeout_s_;
  int world_rank_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t inputs_ready_ = nullptr;  // recorded on the default stream before each operation
  cudaEvent_t done_ = nullptr;          // recorded after each blocking operation
  int* barrier_token_ = nullptr;        // one device int for barrier()
};

}  // namespace

std::unique_ptr<Comm> make_nccl_world(MPI_Comm world, int device, double timeout_s) {
  if (!(timeout_s > 0)) {
    throw std::invalid_argument("make_nccl_world: timeout_s must be > 0, got " +
                                std::to_string(timeout_s));
  }
  int device_count = 0;
  BALEINE_CUDA_CALL(cudaGetDeviceCount(&device_count));
  if (device < 0 || device >= device_count) {
    throw std::invalid_argument("make_nccl_world: CUDA device " + std::to_string(device) +
                                " does not exist (this process sees " +
                                std::to_string(device_count) +
                                "); check CUDA_VISIBLE_DEVICES and the ranks per node");
  }
  // NCCL binds a communicator to the device current at init, and the comm's stream too.
  BALEINE_CUDA_CALL(cudaSetDevice(device));
  MPI_Comm group = MPI_COMM_NULL;
  MPI_Comm_dup(world, &group);  // our own context: no clash with the caller's messages
  ncclComm_t comm = init_with_fresh_unique_id(group);
  return std::make_unique<NcclComm>("world", group, comm, device, timeout_s);
}

}  // namespace baleine::parallel
