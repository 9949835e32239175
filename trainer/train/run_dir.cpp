#include "trainer/train/run_dir.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "trainer/errors.h"

namespace baleine::train {

namespace fs = std::filesystem;

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      throw UserError(path, "", "cannot write file", "check that the run directory is writable "
                                                     "and the disk is not full");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw UserError(path, "", "cannot rename " + tmp + ": " + ec.message());
}

JsonLinesFile::JsonLinesFile(const std::string& dir, const std::string& stem)
    : path_(dir + "/" + stem + ".jsonl"), dir_(dir), stem_(stem) {
  std::error_code ec;
  // An empty file (a run that stopped before its first step) is not worth keeping.
  if (fs::exists(path_) && fs::file_size(path_, ec) > 0) {
    for (int n = 1;; ++n) {
      const std::string kept = kept_name(n);
      if (fs::exists(kept)) continue;
      fs::rename(path_, kept, ec);
      if (ec) throw UserError(path_, "", "cannot keep the previous run's file: " + ec.message());
      kept_previous_ = kept;
      break;
    }
  }
  out_.open(path_, std::ios::out | std::ios::trunc);
  if (!out_) throw UserError(path_, "", "cannot open for writing");
}

void JsonLinesFile::append(const std::string& json_line) {
  out_ << json_line << '\n';
  out_.flush();
}

std::string JsonLinesFile::kept_name(int n) const {
  return dir_ + "/" + stem_ + "." + std::to_string(n) + ".jsonl";
}

void JsonLinesFile::carry_over(int64_t step) {
  // The newest kept file that reached `step` (a run refused before its first step, or one
  // that crashed before reaching it, is passed over).
  const std::string prefix = "{\"step\":";
  const auto step_of = [&](const std::string& line) {
    return line.compare(0, prefix.size(), prefix) == 0
               ? std::strtoll(line.c_str() + prefix.size(), nullptr, 10)
               : -1;
  };
  int newest = 0;
  while (fs::exists(kept_name(newest + 1))) ++newest;
  for (int n = newest; n >= 1; --n) {
    std::vector<std::string> lines;
    bool reached = false;
    std::ifstream in(kept_name(n));
    for (std::string line; std::getline(in, line);) {
      const int64_t line_step = step_of(line);
      if (line_step < 0 || line_step > step) continue;
      reached = reached || line_step == step;
      lines.push_back(line);
    }
    if (!reached) continue;
    for (const auto& line : lines) append(line);
    return;
  }
}

void RunDir::carry_over(int64_t step) {
  metrics_.carry_over(step);
  expert_load_.carry_over(step);
}

namespace {
// Runs before the members are built, so that they open files inside an existing directory.
const std::string& create_run_dir(const config::RunConfig& config) {
  std::error_code ec;
  fs::create_directories(config.run.dir, ec);
  if (ec || !fs::is_directory(config.run.dir)) {
    throw UserError(config.where("run.dir"), "run.dir",
                    "cannot create run directory '" + config.run.dir + "': " + ec.message(),
                    "choose a writable path with --set run.dir=PATH");
  }
  write_file_atomically(config.run.dir + "/config.resolved.yaml", config::config_to_yaml(config));
  return config.run.dir;
}
}  // namespace

RunDir::RunDir(const config::RunConfig& config)
    : path_(create_run_dir(config)), metrics_(path_, "metrics"), expert_load_(path_, "expert_load") {}

std::vector<std::string> RunDir::kept_previous() const {
  std::vector<std::string> kept;
  for (const auto* f : {&metrics_, &expert_load_}) {
    if (!f->kept_previous().empty()) kept.push_back(f->kept_previous());
  }
  return kept;
}

}  // namespace baleine::train
