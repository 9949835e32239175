// NcclComm on one GPU: every operation on device buffers round-trips, sequence numbers count,
// split makes a working sub-group, and an operation that cannot complete ends in the watchdog's
// abort (kExitCommTimeout) instead of a hang.
//
// Scope: a world of ONE rank. NCCL does not support two ranks of one communicator on the same
// GPU, so on a 1-GPU machine multi-rank NCCL cannot run at all; with one rank, every reduction
// is the identity and every exchange goes to oneself, which still checks the plumbing (types,
// counts, offsets, streams, events, sequence numbers). Multi-rank behaviour of the Comm contract
// is tested on MpiComm (comm_mpi_test); running this file under mpiexec on a multi-GPU node is
// left to a multi-GPU runner.
//
// Skips cleanly without the CUDA backend (CI) and on machines without a GPU. Not an *_mpi_test:
// it initialises MPI itself as a singleton (world size 1), only once a GPU was found.
#include <gtest/gtest.h>

#ifdef BALEINE_HAVE_NCCL
#include <cuda_runtime.h>
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel/cuda/nccl_comm.h"
#endif

namespace baleine::parallel {
namespace {

#ifndef BALEINE_HAVE_NCCL

TEST(NcclComm, NeedsTheCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }

#else

constexpr double kTestTimeoutS = 60;  // generous: first NCCL calls load kernels and connect

// MPI_Init once per process, finalised after the last test: MPI cannot be re-initialised.
class MpiSingleton : public testing::Environment {
 public:
  static void ensure_initialised() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) return;
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    started_here_ = true;
  }
  void TearDown() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (started_here_ && !finalized) MPI_Finalize();
  }

 private:
  static inline bool started_here_ = false;
};
testing::Environment* const kMpiEnvironment =
    testing::AddGlobalTestEnvironment(new MpiSingleton);

bool gpu_present() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// A device array of T with host round-trips; test code only, so failures are assertions.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& values) : size_(values.size()) {
    EXPECT_EQ(cudaMalloc(&data_, bytes()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data_, values.data(), bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() { return data_; }
  std::vector<T> to_host() const {
    std::vector<T> values(size_);
    EXPECT_EQ(cudaMemcpy(values.data(), data_, bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return values;
  }

 private:
  size_t bytes() const { return size_ * sizeof(T); }
  size_t size_;
  T* data_ = nullptr;
};

template <typename T>
std::vector<T> random_values(size_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> value(-1000, 1000);
  std::vector<T> values(n);
  for (auto& v : values) v = static_cast<T>(value(generator)) / static_cast<T>(8);
  return values;
}

class NcclWorld : public testing::Test {
 protected:
  void SetUp() override {
    if (!gpu_present()) GTEST_SKIP() << "no CUDA device on this machine";
    MpiSingleton::ensure_initialised();
    world_ = make_nccl_world(MPI_COMM_WORLD, 0, kTestTimeoutS);
  }
  std::unique_ptr<Comm> world_;
};

TEST_F(NcclWorld, DescribesItself) {
  EXPECT_EQ(world_->name(), "world");
  EXPECT_EQ(world_->rank(), 0);
  EXPECT_EQ(world_->size(), 1);
  EXPECT_EQ(world_->world_ranks(), std::vector<int>{0});
  EXPECT_EQ(world_->sequence(), 0u);
}

// With one member the sum is the member's own value, exactly (no rounding: x + nothing).
TEST_F(NcclWorld, AllreduceOfOneRankIsTheIdentityForEveryType) {
  const auto floats = random_values<float>(1000, 1);
  const auto doubles = random_values<double>(333, 2);
  const std::vector<int32_t> ints = {-7, 0, 1, 2147483647};
  const std::vector<int64_t> longs = {-(int64_t{1} << 40), 3};
  DeviceArray<float> f(floats);
  DeviceArray<double> d(doubles);
  DeviceArray<int32_t> i(ints);
  DeviceArray<int64_t> l(longs);
  world_->allreduce_sum(f.get(), 1000, DType::kFloat32);
  world_->allreduce_sum(d.get(), 333, DType::kFloat64);
  world_->allreduce_sum(i.get(), 4, DType::kInt32);
  world_->allreduce_sum(l.get(), 2, DType::kInt64);
  EXPECT_EQ(f.to_host(), floats);
  EXPECT_EQ(d.to_host(), doubles);
  EXPECT_EQ(i.to_host(), ints);
  EXPECT_EQ(l.to_host(), longs);
  EXPECT_EQ(world_->sequence(), 4u);
  EXPECT_THROW(world_->allreduce_sum(i.get(), 4, DType::kByte), std::invalid_argument);
}

TEST_F(NcclWorld, ReduceScatterAndAllgatherCopyTheOneBlock) {
  const auto values = random_values<float>(64, 3);
  DeviceArray<float> send(values);
  DeviceArray<float> recv(std::vector<float>(64, -1));
  world_->reduce_scatter_sum(send.get(), recv.get(), 64, DType::kFloat32);
  EXPECT_EQ(recv.to_host(), values);
  DeviceArray<float> gathered(std::vector<float>(64, -1));
  world_->allgather(send.get(), gathered.get(), 64, DType::kFloat32);
  EXPECT_EQ(gathered.to_host(), values);
  EXPECT_EQ(world_->sequence(), 2u);
}

TEST_F(NcclWorld, AlltoallvMovesTheCountedElementsBetweenTheOffsets) {
  std::vector<double> source(10);
  for (size_t k = 0; k < source.size(); ++k) source[k] = 100.0 + static_cast<double>(k);
  DeviceArray<double> send(source);
  DeviceArray<double> recv(std::vector<double>(12, -1.0));
  const int64_t send_counts[] = {4}, send_offsets[] = {3};
  const int64_t recv_counts[] = {4}, recv_offsets[] = {5};
  world_->alltoallv(send.get(), send_counts, send_offsets, recv.get(), recv_counts,
                    recv_offsets, DType::kFloat64);
  const std::vector<double> expected = {-1, -1, -1, -1, -1, 103, 104, 105, 106, -1, -1, -1};
  EXPECT_EQ(recv.to_host(), expected);

  // Zero counts are normal (an expert that got no tokens): nothing moves, nothing hangs.
  const int64_t none[] = {0};
  world_->alltoallv(send.get(), none, send_offsets, recv.get(), none, recv_offsets,
                    DType::kFloat64);
  EXPECT_EQ(recv.to_host(), expected);
  EXPECT_EQ(world_->sequence(), 2u);
}

TEST_F(NcclWorld, AlltoallSendsBlockZeroToItself) {
  const std::vector<int32_t> values = {1, 2, 3, 4, 5};
  DeviceArray<int32_t> send(values);
  DeviceArray<int32_t> recv(std::vector<int32_t>(5, 0));
  world_->alltoall(send.get(), recv.get(), 5, DType::kInt32);
  EXPECT_EQ(recv.to_host(), values);
  EXPECT_EQ(world_->sequence(), 1u);
}

TEST_F(NcclWorld, BroadcastFromRootKeepsTheRootsData) {
  const std::vector<uint8_t> bytes = {0, 1, 127, 128, 255};
  DeviceArray<uint8_t> data(bytes);
  world_->broadcast(data.get(), 5, DType::kByte, 0);
  EXPECT_EQ(data.to_host(), bytes);
  EXPECT_THROW(world_->broadcast(data.get(), 5, DType::kByte, 1), std::invalid_argument);
}

TEST_F(NcclWorld, SequenceCountsEveryCollectiveButNotPointToPoint) {
  DeviceArray<float> x(std::vector<float>(8, 1.0f));
  world_->barrier();
  EXPECT_EQ(world_->sequence(), 1u);
  world_->allreduce_sum(x.get(), 8, DType::kFloat32);
  world_->broadcast(x.get(), 8, DType::kFloat32, 0);
  world_->allreduce_sum(x.get(), 0, DType::kFloat32);  // empty, but still one collective
  world_->barrier();
  EXPECT_EQ(world_->sequence(), 5u);
  // A zero-count point-to-point posts nothing to NCCL, so it completes even to oneself.
  world_->isend(x.get(), 0, DType::kFloat32, 0, 7)->wait();
  world_->irecv(x.get(), 0, DType::kFloat32, 0, 7)->wait();
  EXPECT_EQ(world_->sequence(), 5u);
  EXPECT_EQ(x.to_host(), std::vector<float>(8, 1.0f));
}

// Point-to-point with data to oneself cannot work: NCCL completes a send only together with its
// matching receive, and isend and irecv are issued separately. NCCL refuses it when the call is
// made ("invalid usage"), so the error is loud rather than a hang; exchanges with data need two
// GPUs.
TEST_F(NcclWorld, PointToPointWithOneselfFailsLoudly) {
  DeviceArray<float> x(std::vector<float>(4, 0.0f));
  try {
    world_->irecv(x.get(), 4, DType::kFloat32, 0, 0);
    ADD_FAILURE() << "irecv from oneself without a matching send was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("ncclRecv"), std::string::npos) << error.what();
  }
}

TEST_F(NcclWorld, SplitMakesAWorkingSubGroupAndCountsAsACollective) {
  world_->barrier();
  std::unique_ptr<Comm> dp = world_->split(/*color=*/0, /*key=*/0, "dp");
  EXPECT_EQ(world_->sequence(), 2u);
  EXPECT_EQ(dp->name(), "dp");
  EXPECT_EQ(dp->rank(), 0);
  EXPECT_EQ(dp->size(), 1);
  EXPECT_EQ(dp->world_ranks(), std::vector<int>{0});
  EXPECT_EQ(dp->sequence(), 0u);
  const auto values = random_values<float>(100, 4);
  DeviceArray<float> x(values);
  dp->allreduce_sum(x.get(), 100, DType::kFloat32);
  EXPECT_EQ(x.to_host(), values);
  EXPECT_EQ(dp->sequence(), 1u);
  EXPECT_EQ(world_->sequence(), 2u);  // groups count separately
  EXPECT_THROW(world_->split(-1, 0, "bad"), std::invalid_argument);
}

// Stands in for a peer that never arrives: blocks the legacy default stream, which every
// operation's stream waits on for its inputs, for 5x the watchdog's 1 s. Not forever: the
// abort (ncclCommAbort, then process exit) waits for this host function to return, so its
// length is the test's running time.
void CUDART_CB block_the_default_stream(void*) {
  std::this_thread::sleep_for(std::chrono::seconds(5));
}

// The watchdog: an operation that cannot complete must end the job with kExitCommTimeout and a
// message naming the group, the operation and its sequence number, not hang. Runs in a
// re-executed child process ("threadsafe" death tests), which starts CUDA, MPI and NCCL afresh.
TEST(NcclWatchdog, AStuckOperationAbortsTheJobWithTheTimeoutStatus) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device on this machine";
  testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_EXIT(
      {
        MpiSingleton::ensure_initialised();
        auto world = make_nccl_world(MPI_COMM_WORLD, 0, /*timeout_s=*/1.0);
        DeviceArray<float> x(std::vector<float>(4, 0.0f));
        world->barrier();
        cudaLaunchHostFunc(cudaStreamLegacy, block_the_default_stream, nullptr);
        world->allreduce_sum(x.get(), 4, DType::kFloat32);
      },
      testing::ExitedWithCode(kExitCommTimeout),
      "group 'world', rank 0 of 1\\): allreduce_sum #2 did not complete within 1 s.*"
      "NCCL does not report which rank is missing");
}

#endif  // BALEINE_HAVE_NCCL

}  // namespace
}  // namespace baleine::parallel
