#pragma once
// The run directory: everything a run leaves behind lives here (see README "Files a run
// leaves"): config.resolved.yaml, metrics.jsonl, expert_load.jsonl, and later checkpoints/ and
// ledger.jsonl.
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "trainer/config/config.h"

namespace baleine::train {

// An append-only JSON-lines file, flushed after every line so a crash loses nothing written.
// A file of the same name left by an earlier run is kept, renamed <stem>.<n>.jsonl, never
// overwritten.
class JsonLinesFile {
 public:
  JsonLinesFile(const std::string& dir, const std::string& stem);
  void append(const std::string& json_line);
  // On resume: copies the lines of steps <= `step` ({"step":N,... }) of the newest kept file
  // that reached `step` into this one, so the file reads as one run from step 1 (kept files
  // stay as they were).
  void carry_over(int64_t step);
  const std::string& path() const { return path_; }
  const std::string& kept_previous() const { return kept_previous_; }  // "" when none

 private:
  std::string kept_name(int n) const;  // <dir>/<stem>.<n>.jsonl

  std::string path_, dir_, stem_;
  std::string kept_previous_;
  std::ofstream out_;
};

class RunDir {
 public:
  // Creates the directory (with parents) and writes config.resolved.yaml. Throws UserError when
  // the directory cannot be created or written.
  explicit RunDir(const config::RunConfig& config);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  JsonLinesFile& metrics() { return metrics_; }          // one object per step
  JsonLinesFile& expert_load() { return expert_load_; }  // one object per step (MoE models)
  // On resume from a checkpoint at `step`: metrics and expert load carry on from it.
  void carry_over(int64_t step);
  // Files of an earlier run that were kept rather than overwritten.
  std::vector<std::string> kept_previous() const;

 private:
  std::string path_;
  JsonLinesFile metrics_;
  JsonLinesFile expert_load_;
};

// Writes `text` to `path` through a temporary file and a rename, so a reader never sees half.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace baleine::train
