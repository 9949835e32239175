#pragma once
// Waiting on MPI with a deadline, and knowing who is late when the deadline passes.
//
// MPI is initialised with MPI_THREAD_FUNNELED, so no helper thread may call MPI: the watchdog
// is not a thread but the wait loop itself. Every operation is issued non-blocking and then
// polled here (MPI_Test with a short spin, then sched_yield, then short sleeps), checking the
// clock between polls.
//
// Arrival tracking: on entering collective #s, a member sends s (one uint64) to every other
// member over a private duplicate of the group's communicator, and keeps one receive posted
// from every peer. While waiting it records each peer's highest announced s, so a timed-out
// collective can name the world ranks that never entered it. Trade-off: O(group size) 8-byte
// messages per collective. That is noise next to CPU-rank collectives of real tensors, and it
// turns "the job hangs" into "world rank 3 never reached allreduce #17 on 'dp'".
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace baleine::parallel {

class Watchdog {
 public:
  // group: the group's communicator (duplicated here, so arrival messages never match the
  // group's own traffic). world_ranks[r]: world rank of group member r.
  Watchdog(MPI_Comm group, std::string group_name, std::vector<int> world_ranks,
           double timeout_s);
  // Waits (bounded by the timeout) for the arrival messages of every collective this member
  // has entered, so none is left unmatched on a communicator that MPI may later reuse.
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Tells every other member that this one has entered collective #sequence.
  void announce(uint64_t sequence);

  // Polls `request` to completion. After timeout_s: prints who has not entered collective
  // #sequence (by world rank) and aborts the job with kExitCommTimeout.
  void wait_collective(MPI_Request* request, const std::string& operation, uint64_t sequence);

  // Polls a point-to-point request with group member `peer`; `what` describes it
  // ("send of 12 float32 to", "recv of 12 float32 from"). Aborts like wait_collective.
  void wait_point_to_point(MPI_Request* request, const std::string& what, int peer, int tag);

  double timeout_s() const { return timeout_s_; }
  // "group 'dp' (world ranks 0,1,2,3)": how messages name this group.
  std::string describe_group() const;

 private:
  // Polls until done; on timeout builds the message with `describe_timeout` and aborts.
  void poll(MPI_Request* request, const std::function<std::string()>& describe_timeout,
            const char* hint);
  void drain_arrivals();
  void drop_completed_sends();
  void post_arrival_receive(int peer);
  std::string missing_members(uint64_t sequence) const;
  [[noreturn]] void abort_job(const std::string& message, const std::string& hint) const;

  // One announcement: the value every send reads, and the sends still in flight. Heap-held so
  // the buffer does not move while MPI reads it.
  struct AnnouncementSends {
    uint64_t sequence = 0;
    std::vector<MPI_Request> requests;
  };

  MPI_Comm arrivals_ = MPI_COMM_NULL;
  std::string group_name_;
  std::vector<int> world_ranks_;
  double timeout_s_;
  int rank_ = 0;
  uint64_t announced_ = 0;                     // highest sequence this member announced
  std::vector<uint64_t> last_arrived_;         // per group rank: highest announced sequence
  std::vector<uint64_t> receive_buffers_;      // per group rank: the posted receive's buffer
  std::vector<MPI_Request> arrival_receives_;  // per group rank; MPI_REQUEST_NULL for self
  std::vector<int> completed_;                 // MPI_Testsome's output, kept to poll alloc-free
  std::vector<std::unique_ptr<AnnouncementSends>> pending_sends_;
};

}  // namespace baleine::parallel
