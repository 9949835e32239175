#pragma once
// Where a device's wall time goes. Every second of every rank, from its process start to its
// last ledger record, is in exactly one segment, so the segments of a run add up to
// world size x wall time (the ledger's invariant, tested).
#include <array>
#include <cstddef>
#include <string>

namespace baleine::cost {

enum class Segment : int {
  kStartup = 0,     // process start to the first step: MPI, data, model, optimizer
  kCompute,         // the model's forward/backward/weight-gradient work and the optimizer update
  kCommunication,   // exposed communication: time inside collectives (all-reduce, all-to-all)
  kBubble,          // pipeline bubble: waiting for activations or gradients of another stage
  kCheckpoint,      // checkpoint I/O
  kEvaluation,      // validation passes
  kIdle,            // everything else: logging, metrics, waiting at the end
  kLostWork,        // work of a crashed or killed restart after its last checkpoint (found on
                    // resume; never measured directly)
};
constexpr size_t kSegmentCount = 8;

using SegmentSeconds = std::array<double, kSegmentCount>;

// "startup", "compute", "exposed_communication", "pipeline_bubble", "checkpoint_io",
// "evaluation", "idle", "lost_work": the JSON keys of the ledger and the reports.
const char* segment_key(Segment segment);
// "startup", "compute", "exposed communication", ... for tables.
const char* segment_label(Segment segment);
// The segment of a JSON key, false when the key is unknown.
bool segment_from_key(const std::string& key, Segment* segment);

inline double total_seconds(const SegmentSeconds& s) {
  double t = 0;
  for (double v : s) t += v;
  return t;
}

}  // namespace baleine::cost
