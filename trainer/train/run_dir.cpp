#include "trainer/train/run_dir.h"

#include <cstdio>
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

RunDir::RunDir(const config::RunConfig& config) : path_(config.run.dir) {
  std::error_code ec;
  fs::create_directories(path_, ec);
  if (ec || !fs::is_directory(path_)) {
    throw UserError(config.source, "run.dir",
                    "cannot create run directory '" + path_ + "': " + ec.message(),
                    "choose a writable path with --set run.dir=PATH");
  }
  write_file_atomically(file("config.resolved.yaml"), config::config_to_yaml(config));

  const std::string metrics_path = file("metrics.jsonl");
  if (fs::exists(metrics_path)) {
    for (int n = 1;; ++n) {
      const std::string kept = file("metrics." + std::to_string(n) + ".jsonl");
      if (!fs::exists(kept)) {
        fs::rename(metrics_path, kept, ec);
        if (ec) throw UserError(metrics_path, "", "cannot keep the previous metrics: " + ec.message());
        kept_previous_metrics_ = kept;
        break;
      }
    }
  }
  metrics_.open(metrics_path, std::ios::out | std::ios::trunc);
  if (!metrics_) throw UserError(metrics_path, "", "cannot open for writing");
}

void RunDir::append_metrics(const std::string& json_line) {
  metrics_ << json_line << '\n';
  metrics_.flush();
}

}  // namespace baleine::train
