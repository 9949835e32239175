#pragma once
// The run directory: everything a run leaves behind lives here (see README "Files a run
// leaves"): config.resolved.yaml, metrics.jsonl, and later checkpoints/ and ledger.jsonl.
#include <fstream>
#include <string>

#include "trainer/config/config.h"

namespace baleine::train {

class RunDir {
 public:
  // Creates the directory (with parents) and writes config.resolved.yaml. A metrics.jsonl left
  // by an earlier run in the same directory is kept, renamed metrics.<n>.jsonl, never
  // overwritten. Throws UserError when the directory cannot be created or written.
  explicit RunDir(const config::RunConfig& config);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // One JSON object per line; flushed after every line so a crash loses nothing written.
  void append_metrics(const std::string& json_line);
  const std::string& kept_previous_metrics() const { return kept_previous_metrics_; }

 private:
  std::string path_;
  std::string kept_previous_metrics_;
  std::ofstream metrics_;
};

// Writes `text` to `path` through a temporary file and a rename, so a reader never sees half.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace baleine::train
