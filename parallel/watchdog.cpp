#include "parallel/watchdog.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <utility>

#include "parallel/comm.h"

// MPI errors are fatal (the default MPI_ERRORS_ARE_FATAL handler on every communicator): MPI
// itself aborts the job with its own message, so return codes are not checked here.

namespace baleine::parallel {
namespace {

using Clock = std::chrono::steady_clock;

// Polling schedule. Most CPU collectives finish within tens of microseconds: spinning that
// long costs nothing and adds no latency. Then yield the core between polls (ranks are often
// oversubscribed on CI machines, and a spinning rank steals time from the one it waits for;
// sched_yield returns at once when nobody else wants the core). Polls must stay frequent while
// data moves: without an asynchronous progress thread, Open MPI advances a large non-blocking
// transfer only inside MPI_Test, one fragment at a time, and sleeping 50 µs between polls made
// an 8 MB alltoallv 2-3x slower than the bare call (bench/dispatch_bench.cpp). Only a wait that
// has already lasted 100 ms (a slow peer, a rank loading data) sleeps between polls: 50 µs,
// then 0.5 ms after a second, so a long idle wait costs almost nothing.
constexpr auto kSpinFor = std::chrono::microseconds(50);
constexpr auto kYieldFor = std::chrono::milliseconds(100);
constexpr auto kShortSleepsFor = std::chrono::milliseconds(1000);
constexpr long kShortSleepNanoseconds = 50'000;
constexpr long kLongSleepNanoseconds = 500'000;

constexpr int kArrivalTag = 0;

std::string join(const std::vector<int>& values) {
  std::string s;
  for (size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + std::to_string(values[i]);
  return s;
}

std::string seconds(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

void sleep_for(long nanoseconds) {
  timespec pause{0, nanoseconds};
  nanosleep(&pause, nullptr);
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

}  // namespace

Watchdog::Watchdog(MPI_Comm group, std::string group_name, std::vector<int> world_ranks,
                   double timeout_s)
    : group_name_(std::move(group_name)), world_ranks_(std::move(world_ranks)),
      timeout_s_(timeout_s) {
  MPI_Comm_dup(group, &arrivals_);
  MPI_Comm_rank(arrivals_, &rank_);
  const size_t size = world_ranks_.size();
  last_arrived_.assign(size, 0);
  receive_buffers_.assign(size, 0);
  arrival_receives_.assign(size, MPI_REQUEST_NULL);
  completed_.assign(size, 0);
  for (int peer = 0; peer < static_cast<int>(size); ++peer) {
    if (peer != rank_) post_arrival_receive(peer);
  }
}

Watchdog::~Watchdog() {
  if (mpi_finalized()) return;  // too late to clean up; the process is ending anyway
  // Every peer announces every collective it enters, and this member completed all of
  // `announced_`, so those messages are on their way: receive them, then cancel the receives
  // that would only match future (never sent) announcements.
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
  auto behind = [&] {
    for (size_t peer = 0; peer < last_arrived_.size(); ++peer) {
      if (static_cast<int>(peer) != rank_ && last_arrived_[peer] < announced_) return true;
    }
    return false;
  };
  bool clean = true;
  for (drain_arrivals(); behind(); drain_arrivals()) {
    if (Clock::now() > deadline) {
      clean = false;
      break;
    }
    sleep_for(kShortSleepNanoseconds);
  }
  for (MPI_Request& receive : arrival_receives_) {
    if (receive == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&receive);
    MPI_Wait(&receive, MPI_STATUS_IGNORE);
  }
  for (drop_completed_sends(); !pending_sends_.empty(); drop_completed_sends()) {
    if (Clock::now() > deadline) {
      clean = false;
      break;
    }
    sleep_for(kShortSleepNanoseconds);
  }
  if (!clean) {
    // Freeing now could leave a stray message on a communicator id MPI may hand out again;
    // leaking one communicator is the lesser harm.
    std::fprintf(stderr,
                 "warning: world rank %d: %s was destroyed while peers had not announced all "
                 "%llu collectives within %s; its arrival channel is left open\n",
                 world_ranks_[rank_], describe_group().c_str(),
                 static_cast<unsigned long long>(announced_), seconds(timeout_s_).c_str());
    return;
  }
  MPI_Comm_free(&arrivals_);
}

std::string Watchdog::describe_group() const {
  return "group '" + group_name_ + "' (world ranks " + join(world_ranks_) + ")";
}

void Watchdog::post_arrival_receive(int peer) {
  MPI_Irecv(&receive_buffers_[peer], 1, MPI_UINT64_T, peer, kArrivalTag, arrivals_,
            &arrival_receives_[peer]);
}

void Watchdog::announce(uint64_t sequence) {
  announced_ = sequence;
  drop_completed_sends();
  if (world_ranks_.size() < 2) return;
  auto sends = std::make_unique<AnnouncementSends>();
  sends->sequence = sequence;
  sends->requests.reserve(world_ranks_.size() - 1);
  for (int peer = 0; peer < static_cast<int>(world_ranks_.size()); ++peer) {
    if (peer == rank_) continue;
    // MPI-3 allows concurrent sends from one buffer: all of them read sends->sequence.
    sends->requests.push_back(MPI_REQUEST_NULL);
    MPI_Isend(&sends->sequence, 1, MPI_UINT64_T, peer, kArrivalTag, arrivals_,
              &sends->requests.back());
  }
  pending_sends_.push_back(std::move(sends));
}

void Watchdog::drain_arrivals() {
  const int size = static_cast<int>(arrival_receives_.size());
  if (size < 2) return;
  for (;;) {
    int count = 0;
    MPI_Testsome(size, arrival_receives_.data(), &count, completed_.data(), MPI_STATUSES_IGNORE);
    if (count == MPI_UNDEFINED || count == 0) return;
    for (int i = 0; i < count; ++i) {
      const int peer = completed_[static_cast<size_t>(i)];
      // Messages between a pair arrive in order, so this is the peer's latest announcement.
      last_arrived_[peer] = std::max(last_arrived_[peer], receive_buffers_[peer]);
      post_arrival_receive(peer);
    }
  }
}

void Watchdog::drop_completed_sends() {
  auto done = [](std::unique_ptr<AnnouncementSends>& sends) {
    int flag = 0;
    MPI_Testall(static_cast<int>(sends->requests.size()), sends->requests.data(), &flag,
                MPI_STATUSES_IGNORE);
    return flag != 0;
  };
  pending_sends_.erase(std::remove_if(pending_sends_.begin(), pending_sends_.end(), done),
                       pending_sends_.end());
}

void Watchdog::poll(MPI_Request* request, const std::function<std::string()>& describe_timeout,
                    const char* hint) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s_);
  for (;;) {
    int done = 0;
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    const auto now = Clock::now();
    if (now - start < kSpinFor) continue;
    drain_arrivals();
    drop_completed_sends();
    if (now >= deadline) {
      drain_arrivals();  // the freshest picture of who has arrived
      abort_job(describe_timeout(), hint);
    }
    if (now - start < kYieldFor) {
      sched_yield();
    } else {
      sleep_for(now - start < kShortSleepsFor ? kShortSleepNanoseconds : kLongSleepNanoseconds);
    }
  }
}

void Watchdog::wait_collective(MPI_Request* request, const std::string& operation,
                               uint64_t sequence) {
  poll(request, [&] {
    return operation + " #" + std::to_string(sequence) + " on " + describe_group() +
           " did not complete within " + seconds(timeout_s_) + "; " + missing_members(sequence);
  }, "a rank is hung or dead; see its log. Raise parallel.timeout_s if the step is just slow.");
}

void Watchdog::wait_point_to_point(MPI_Request* request, const std::string& what, int peer,
                                   int tag) {
  poll(request, [&] {
    const uint64_t last = last_arrived_[peer];
    return what + " world rank " + std::to_string(world_ranks_[peer]) + " (tag " +
           std::to_string(tag) + ") on " + describe_group() + " did not complete within " +
           seconds(timeout_s_) + "; that rank's last collective on '" + group_name_ +
           "' was " + (last ? "#" + std::to_string(last) : std::string("none yet")) +
           ", this rank's #" + std::to_string(announced_);
  }, "the peer is hung, dead, or never posted the matching send/receive (same tag, count and "
     "group); see its log. Raise parallel.timeout_s if the step is just slow.");
}

std::string Watchdog::missing_members(uint64_t sequence) const {
  std::vector<int> missing;
  std::vector<uint64_t> their_last;
  for (size_t peer = 0; peer < last_arrived_.size(); ++peer) {
    if (static_cast<int>(peer) == rank_ || last_arrived_[peer] >= sequence) continue;
    missing.push_back(world_ranks_[peer]);
    their_last.push_back(last_arrived_[peer]);
  }
  if (missing.empty()) {
    return "all members entered it; the network or MPI is stuck, or the members called it "
           "with different arguments (operation, root, counts)";
  }
  auto last_text = [](uint64_t last) {
    return last ? "#" + std::to_string(last) : std::string("none yet");
  };
  const bool same_last =
      std::all_of(their_last.begin(), their_last.end(),
                  [&](uint64_t last) { return last == their_last.front(); });
  if (same_last) {
    return "world rank(s) " + join(missing) + " have not entered it (their last collective on '" +
           group_name_ + "' was " + last_text(their_last.front()) + ")";
  }
  std::string s = "world rank(s) ";
  for (size_t i = 0; i < missing.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(missing[i]) + " (last " + last_text(their_last[i]) + ")";
  }
  return s + " have not entered it";
}

void Watchdog::abort_job(const std::string& message, const std::string& hint) const {
  // One write, so lines from several ranks do not interleave mid-message.
  const std::string text = "error: world rank " + std::to_string(world_ranks_[rank_]) + ": " +
                           message + "\nHINT: " + hint + "\n";
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, kExitCommTimeout);
  std::_Exit(kExitCommTimeout);  // MPI_Abort does not return; this is belt and braces
}

}  // namespace baleine::parallel
