// MpiComm against closed forms, on the world and on split sub-groups, under 2 and 4 ranks.
//
// Every rank runs every test, and collective code only uses EXPECT_ (never ASSERT_), so a
// failure on one rank never leaves the other ranks waiting in an unmatched collective.
// Reduction checks use small integers, exactly representable in float32, so sums are exact
// whatever order MPI adds them in; only the determinism test uses arbitrary floats.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/comm.h"

namespace baleine::parallel {
namespace {

// Generous: 4 ranks share 2 cores in CI. A broken test aborts with the watchdog's message.
constexpr double kTimeoutS = 60.0;

// The groups each test runs on: the world and three splits of it. With 2 ranks the parity
// split gives groups of one member, which must work too.
struct Groups {
  std::unique_ptr<Comm> world = make_mpi_world(kTimeoutS);
  std::unique_ptr<Comm> parity = world->split(world->rank() % 2, world->rank(), "parity");
  std::unique_ptr<Comm> pairs = world->split(world->rank() / 2, world->rank(), "pairs");
  // One group holding everyone, ordered by descending world rank (key decides the order).
  std::unique_ptr<Comm> reversed = world->split(0, -world->rank(), "reversed");

  std::vector<Comm*> all() const {
    return {world.get(), parity.get(), pairs.get(), reversed.get()};
  }
};

int world_rank(const Comm& comm) { return comm.world_ranks()[comm.rank()]; }

int64_t sum_of_world_ranks_plus_one(const Comm& comm) {
  int64_t sum = 0;
  for (int r : comm.world_ranks()) sum += r + 1;
  return sum;
}

// A value every rank can compute for (source, destination, index): identifies where a
// received element came from.
int64_t code(int64_t source_world_rank, int64_t destination, int64_t index) {
  return source_world_rank * 1'000'000 + destination * 1'000 + index;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

template <class T>
void check_allreduce(Comm& comm, DType type, int64_t count, T offset) {
  std::vector<T> data(static_cast<size_t>(count));
  const T mine = static_cast<T>(world_rank(comm) + 1);
  for (int64_t i = 0; i < count; ++i) data[i] = mine * (offset + static_cast<T>(i % 1000 + 1));
  comm.allreduce_sum(data.data(), count, type);
  const T members = static_cast<T>(sum_of_world_ranks_plus_one(comm));
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i) {
    wrong += data[i] != members * (offset + static_cast<T>(i % 1000 + 1));
  }
  EXPECT_EQ(wrong, 0) << comm.name() << " count " << count;
}

TEST(MpiComm, WorldIsEveryProcessInRankOrder) {
  auto world = make_mpi_world(kTimeoutS);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(world->name(), "world");
  EXPECT_EQ(world->rank(), rank);
  EXPECT_EQ(world->size(), size);
  std::vector<int> expected(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) expected[r] = r;
  EXPECT_EQ(world->world_ranks(), expected);
  EXPECT_EQ(world->sequence(), 0u);
}

TEST(MpiComm, SplitGroupsHaveTheRightSizeOrderAndWorldRanks) {
  Groups groups;
  const int me = groups.world->rank(), n = groups.world->size();

  std::vector<int> same_parity;
  for (int r = me % 2; r < n; r += 2) same_parity.push_back(r);
  EXPECT_EQ(groups.parity->name(), "parity");
  EXPECT_EQ(groups.parity->world_ranks(), same_parity);
  EXPECT_EQ(groups.parity->size(), static_cast<int>(same_parity.size()));
  EXPECT_EQ(groups.parity->rank(), me / 2);

  std::vector<int> pair;
  for (int r = me / 2 * 2; r < std::min(n, me / 2 * 2 + 2); ++r) pair.push_back(r);
  EXPECT_EQ(groups.pairs->world_ranks(), pair);
  EXPECT_EQ(groups.pairs->rank(), me % 2);

  std::vector<int> descending;
  for (int r = n - 1; r >= 0; --r) descending.push_back(r);
  EXPECT_EQ(groups.reversed->world_ranks(), descending);
  EXPECT_EQ(groups.reversed->rank(), n - 1 - me);

  // A split of a split: halves of the reversed order, still descending.
  auto halves = groups.reversed->split(groups.reversed->rank() < n / 2 ? 0 : 1, 0, "half");
  std::vector<int> my_half;
  for (int r : descending) {
    if ((n - 1 - r < n / 2) == (n - 1 - me < n / 2)) my_half.push_back(r);
  }
  EXPECT_EQ(halves->world_ranks(), my_half);
  EXPECT_EQ(halves->sequence(), 0u);
}

TEST(MpiComm, AllreduceSumsMatchTheClosedForm) {
  Groups groups;
  for (Comm* comm : groups.all()) {
    for (int64_t count : {1, 1000, 100003}) {
      check_allreduce<float>(*comm, DType::kFloat32, count, 0.0f);
      check_allreduce<double>(*comm, DType::kFloat64, count, 0.5);
      check_allreduce<int32_t>(*comm, DType::kInt32, count, 1 << 20);
      // Beyond 32 bits: catches a reduction done in the wrong width.
      check_allreduce<int64_t>(*comm, DType::kInt64, count, int64_t{1} << 40);
    }
  }
}

TEST(MpiComm, ReduceScatterThenAllgatherEqualsAllreduce) {
  Groups groups;
  constexpr int64_t kPerRank = 37;
  for (Comm* comm : groups.all()) {
    const int64_t total = kPerRank * comm->size();
    std::vector<double> send(static_cast<size_t>(total));
    for (int64_t j = 0; j < total; ++j) send[j] = (world_rank(*comm) + 1) * double(j + 1);
    std::vector<double> block(kPerRank), gathered(static_cast<size_t>(total), -1.0);
    comm->reduce_scatter_sum(send.data(), block.data(), kPerRank, DType::kFloat64);
    const double members = double(sum_of_world_ranks_plus_one(*comm));
    for (int64_t i = 0; i < kPerRank; ++i) {
      EXPECT_EQ(block[i], members * double(comm->rank() * kPerRank + i + 1)) << comm->name();
    }
    comm->allgather(block.data(), gathered.data(), kPerRank, DType::kFloat64);
    std::vector<double> reduced = send;
    comm->allreduce_sum(reduced.data(), total, DType::kFloat64);
    EXPECT_EQ(gathered, reduced) << comm->name();
  }
}

TEST(MpiComm, AlltoallDeliversBlockRToMemberR) {
  Groups groups;
  constexpr int64_t kPerRank = 5;
  for (Comm* comm : groups.all()) {
    const int n = comm->size();
    std::vector<int64_t> send(static_cast<size_t>(n * kPerRank)), recv(send.size(), -1);
    for (int r = 0; r < n; ++r) {
      for (int64_t i = 0; i < kPerRank; ++i) send[r * kPerRank + i] = code(world_rank(*comm), r, i);
    }
    comm->alltoall(send.data(), recv.data(), kPerRank, DType::kInt64);
    for (int r = 0; r < n; ++r) {
      for (int64_t i = 0; i < kPerRank; ++i) {
        EXPECT_EQ(recv[r * kPerRank + i], code(comm->world_ranks()[r], comm->rank(), i))
            << comm->name() << " block " << r;
      }
    }
  }
}

// Counts drawn from a seed every member shares, so both sides agree on every block: about a
// quarter are zero, and the last member sends nothing at all. Blocks sit at shuffled offsets
// with gaps (send: reverse rank order, one-element gaps; recv: two-element gaps) so that the
// offsets, not just the counts, must be honoured; the gaps must stay untouched.
void check_alltoallv(Comm& comm, uint64_t seed) {
  const int n = comm.size(), me = comm.rank();
  auto count = [&](int source, int destination) -> int64_t {
    if (source == n - 1) return 0;
    return int64_t(splitmix64(seed * 1009 + uint64_t(source) * 31 + uint64_t(destination)) % 4);
  };
  constexpr int64_t kSentinel = -7;
  std::vector<int64_t> send_counts(n), send_offsets(n), recv_counts(n), recv_offsets(n);
  int64_t send_total = 0, recv_total = 0;
  for (int r = n - 1; r >= 0; --r) {
    send_counts[r] = count(me, r);
    send_offsets[r] = send_total;
    send_total += send_counts[r] + 1;
  }
  for (int r = 0; r < n; ++r) {
    recv_counts[r] = count(r, me);
    recv_offsets[r] = recv_total + 2;
    recv_total += recv_counts[r] + 2;
  }
  std::vector<int64_t> send(static_cast<size_t>(send_total), kSentinel);
  std::vector<int64_t> recv(static_cast<size_t>(recv_total), kSentinel);
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < send_counts[r]; ++i) {
      send[send_offsets[r] + i] = code(world_rank(comm), r, i);
    }
  }
  comm.alltoallv(send.data(), send_counts.data(), send_offsets.data(), recv.data(),
                 recv_counts.data(), recv_offsets.data(), DType::kInt64);
  std::vector<int64_t> expected(recv.size(), kSentinel);
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < recv_counts[r]; ++i) {
      expected[recv_offsets[r] + i] = code(comm.world_ranks()[r], me, i);
    }
  }
  EXPECT_EQ(recv, expected) << comm.name() << " seed " << seed;
}

TEST(MpiComm, AlltoallvWithZeroCountsAndARankThatSendsNothing) {
  Groups groups;
  for (Comm* comm : groups.all()) {
    for (uint64_t seed = 1; seed <= 6; ++seed) check_alltoallv(*comm, seed);
  }
}

TEST(MpiComm, BroadcastCopiesTheRootsDataFromEveryRoot) {
  Groups groups;
  for (Comm* comm : groups.all()) {
    for (int root = 0; root < comm->size(); ++root) {
      std::vector<float> data(129, -1.0f);
      if (comm->rank() == root) {
        for (size_t i = 0; i < data.size(); ++i) data[i] = float(root * 1000 + int(i));
      }
      comm->broadcast(data.data(), int64_t(data.size()), DType::kFloat32, root);
      int wrong = 0;
      for (size_t i = 0; i < data.size(); ++i) wrong += data[i] != float(root * 1000 + int(i));
      EXPECT_EQ(wrong, 0) << comm->name() << " root " << root;
    }
  }
}

TEST(MpiComm, IsendIrecvAroundARingMatchByTag) {
  Groups groups;
  for (Comm* comm : groups.all()) {
    const int n = comm->size(), me = comm->rank();
    const int next = (me + 1) % n, previous = (me + n - 1) % n;
    std::vector<int32_t> first(3, me), second(4, me * 10);
    std::vector<int32_t> got_first(3, -1), got_second(4, -1);
    // Receives posted in the opposite order of the sends: matching is by tag, not arrival.
    auto recv_second = comm->irecv(got_second.data(), 4, DType::kInt32, previous, 8);
    auto recv_first = comm->irecv(got_first.data(), 3, DType::kInt32, previous, 7);
    auto send_first = comm->isend(first.data(), 3, DType::kInt32, next, 7);
    auto send_second = comm->isend(second.data(), 4, DType::kInt32, next, 8);
    recv_first->wait();
    recv_second->wait();
    send_first->wait();
    send_second->wait();
    EXPECT_EQ(got_first, std::vector<int32_t>(3, previous)) << comm->name();
    EXPECT_EQ(got_second, std::vector<int32_t>(4, previous * 10)) << comm->name();
    recv_first->wait();  // waiting again on a completed request returns at once
  }
}

TEST(MpiComm, SequenceCountsEveryCollectiveAndIsEqualAcrossMembers) {
  Groups groups;
  Comm& world = *groups.world;
  uint64_t expected = world.sequence();
  EXPECT_EQ(expected, 3u);  // the three splits in Groups
  std::vector<double> x(4 * world.size(), 1.0), y(4 * world.size());
  std::vector<int64_t> counts(world.size(), 1), offsets(world.size());
  for (int r = 0; r < world.size(); ++r) offsets[r] = r;
  world.allreduce_sum(x.data(), 4, DType::kFloat64);
  EXPECT_EQ(world.sequence(), ++expected);
  world.reduce_scatter_sum(x.data(), y.data(), 4, DType::kFloat64);
  EXPECT_EQ(world.sequence(), ++expected);
  world.allgather(x.data(), y.data(), 4, DType::kFloat64);
  EXPECT_EQ(world.sequence(), ++expected);
  world.alltoall(x.data(), y.data(), 4, DType::kFloat64);
  EXPECT_EQ(world.sequence(), ++expected);
  world.alltoallv(x.data(), counts.data(), offsets.data(), y.data(), counts.data(),
                  offsets.data(), DType::kFloat64);
  EXPECT_EQ(world.sequence(), ++expected);
  world.broadcast(x.data(), 4, DType::kFloat64, 0);
  EXPECT_EQ(world.sequence(), ++expected);
  world.barrier();
  EXPECT_EQ(world.sequence(), ++expected);
  auto part = world.split(0, 0, "all");
  EXPECT_EQ(world.sequence(), ++expected);
  EXPECT_EQ(part->sequence(), 0u);
  // Point-to-point is not a collective.
  int32_t token = 1, received = 0;
  auto recv = world.irecv(&received, 1, DType::kInt32, world.rank(), 0);
  world.isend(&token, 1, DType::kInt32, world.rank(), 0)->wait();
  recv->wait();
  EXPECT_EQ(world.sequence(), expected);

  for (Comm* comm : groups.all()) {
    const int64_t mine = int64_t(comm->sequence());
    std::vector<int64_t> everyone(comm->size(), -1);
    comm->allgather(&mine, everyone.data(), 1, DType::kInt64);
    EXPECT_EQ(everyone, std::vector<int64_t>(comm->size(), mine)) << comm->name();
  }
}

TEST(MpiComm, AllreduceIsBitIdenticalWhenRepeatedAndOnEveryMember) {
  Groups groups;
  for (Comm* comm : groups.all()) {
    std::mt19937 random(1234u + unsigned(world_rank(*comm)));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> input(10007);
    for (float& v : input) v = normal(random);
    std::vector<float> first = input, second = input;
    comm->allreduce_sum(first.data(), int64_t(first.size()), DType::kFloat32);
    comm->allreduce_sum(second.data(), int64_t(second.size()), DType::kFloat32);
    EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0)
        << comm->name();
    std::vector<float> everyone(first.size() * comm->size());
    comm->allgather(first.data(), everyone.data(), int64_t(first.size()), DType::kFloat32);
    for (int r = 0; r < comm->size(); ++r) {
      const float* theirs = &everyone[r * first.size()];
      EXPECT_EQ(std::memcmp(theirs, first.data(), first.size() * sizeof(float)), 0)
          << comm->name() << " member " << r;
    }
  }
}

TEST(MpiComm, ZeroCountCollectivesStillSynchronise) {
  Groups groups;
  for (Comm* comm : groups.all()) {
    const uint64_t before = comm->sequence();
    std::vector<int64_t> zeros(comm->size(), 0);
    // Empty vectors' data() is null: what callers with nothing to send will pass.
    std::vector<double> empty;
    comm->allreduce_sum(empty.data(), 0, DType::kFloat64);
    comm->allgather(empty.data(), empty.data(), 0, DType::kFloat64);
    comm->alltoall(empty.data(), empty.data(), 0, DType::kFloat64);
    comm->alltoallv(empty.data(), zeros.data(), zeros.data(), empty.data(), zeros.data(),
                    zeros.data(), DType::kFloat64);
    comm->broadcast(empty.data(), 0, DType::kFloat64, 0);
    EXPECT_EQ(comm->sequence(), before + 5) << comm->name();
  }
}

// Bad sizes are rejected on the calling rank before the collective is announced, so every
// rank (given the same bad input) throws and the group stays usable.
TEST(MpiComm, CountsBeyondIntThrowNamingTheGroupBeforeAnythingIsIssued) {
  Groups groups;
  Comm& pairs = *groups.pairs;
  const uint64_t before = pairs.sequence();
  std::vector<int64_t> counts(pairs.size(), 0), offsets(pairs.size(), 0);
  offsets.back() = int64_t{INT_MAX} + 1;
  double dummy = 0.0;
  try {
    pairs.alltoallv(&dummy, counts.data(), offsets.data(), &dummy, counts.data(), counts.data(),
                    DType::kFloat64);
    ADD_FAILURE() << "expected std::overflow_error";
  } catch (const std::overflow_error& error) {
    EXPECT_NE(std::string(error.what()).find("'pairs'"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("send_offsets"), std::string::npos) << error.what();
  }
  EXPECT_THROW(pairs.allreduce_sum(&dummy, int64_t{1} << 31, DType::kFloat64),
               std::overflow_error);
  EXPECT_THROW(pairs.allreduce_sum(&dummy, -1, DType::kFloat64), std::invalid_argument);
  EXPECT_THROW(pairs.allreduce_sum(&dummy, 1, DType::kByte), std::invalid_argument);
  EXPECT_THROW(pairs.broadcast(&dummy, 1, DType::kFloat64, pairs.size()), std::invalid_argument);
  EXPECT_THROW(pairs.isend(&dummy, 1, DType::kFloat64, -1, 0), std::invalid_argument);
  EXPECT_EQ(pairs.sequence(), before);
  pairs.barrier();
  EXPECT_EQ(pairs.sequence(), before + 1);
}

TEST(MpiComm, ManyShortLivedGroupsCleanUpAfterThemselves) {
  auto world = make_mpi_world(kTimeoutS);
  for (int round = 0; round < 40; ++round) {
    auto group = world->split((world->rank() + round) % 2, 0, "short_lived");
    int64_t one = 1;
    group->allreduce_sum(&one, 1, DType::kInt64);
    EXPECT_EQ(one, group->size()) << "round " << round;
  }
  world->barrier();
}

TEST(DTypeSize, MatchesTheCTypes) {
  EXPECT_EQ(dtype_size(DType::kFloat32), sizeof(float));
  EXPECT_EQ(dtype_size(DType::kFloat64), sizeof(double));
  EXPECT_EQ(dtype_size(DType::kInt32), sizeof(int32_t));
  EXPECT_EQ(dtype_size(DType::kInt64), sizeof(int64_t));
  EXPECT_EQ(dtype_size(DType::kByte), 1u);
}

}  // namespace
}  // namespace baleine::parallel
