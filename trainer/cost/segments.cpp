#include "trainer/cost/segments.h"

namespace baleine::cost {

namespace {
struct SegmentNames {
  const char* key;    // JSON: stable, part of the ledger's format
  const char* label;  // tables: free to read well
};

// In Segment's order; the static_assert keeps the two lists from drifting apart.
constexpr SegmentNames kNames[] = {
    {"startup", "startup"},
    {"compute", "compute"},
    {"exposed_communication", "exposed communication"},
    {"pipeline_bubble", "pipeline bubble"},
    {"checkpoint_io", "checkpoint I/O"},
    {"evaluation", "evaluation"},
    {"idle", "idle"},
    {"lost_work", "lost work"},
};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == kSegmentCount,
              "every Segment needs a key and a label");
static_assert(static_cast<size_t>(Segment::kLostWork) + 1 == kSegmentCount,
              "kLostWork is the last segment");
}  // namespace

const char* segment_key(Segment segment) { return kNames[static_cast<size_t>(segment)].key; }

const char* segment_label(Segment segment) { return kNames[static_cast<size_t>(segment)].label; }

bool segment_from_key(const std::string& key, Segment* segment) {
  for (size_t i = 0; i < kSegmentCount; ++i) {
    if (key == kNames[i].key) {
      *segment = static_cast<Segment>(i);
      return true;
    }
  }
  return false;
}

}  // namespace baleine::cost
