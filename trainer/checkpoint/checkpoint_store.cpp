// The checkpoint directories of a run: naming, listing, the temporary → rename → DONE commit,
// pruning and reading a manifest (checkpoint_store.h). Whatever a kill interrupts, a directory
// has DONE only once everything in it is durable, and DONE goes first when one is deleted.
#include "trainer/checkpoint/checkpoint_store.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "trainer/checkpoint/durable_files.h"
#include "trainer/checkpoint/kill_point.h"
#include "trainer/errors.h"

namespace baleine::ckpt {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTemporaryPrefix = ".tmp-";
// A complete checkpoint of the same step that a commit replaces waits here until the new one
// has DONE; like temporaries, leftovers are removed by the next prepare_temporary.
constexpr const char* kTrashPrefix = ".trash-";
constexpr const char* kDoneFile = "DONE";
constexpr const char* kManifestFile = "manifest.json";
// A manifest lists every record of every rank: tens of MB for the largest models; a file far
// beyond that is not a manifest.
constexpr int64_t kMaxManifestBytes = int64_t{1} << 30;

[[noreturn]] void throw_fs_error(const std::string& path, const std::string& doing,
                                 const std::error_code& error) {
  detail::throw_io_error(path, doing, error.value());
}

bool is_complete(const fs::path& dir) {
  std::error_code error;
  return fs::exists(dir / kDoneFile, error) && fs::exists(dir / kManifestFile, error);
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

void remove_tree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (error) throw_fs_error(path.string(), "cannot delete", error);
}

void rename_durably(const fs::path& from, const fs::path& to) {
  detail::kill_point("before renaming " + from.string() + " to " + to.string());
  std::error_code error;
  fs::rename(from, to, error);
  if (error) throw_fs_error(from.string(), "cannot rename to " + to.string(), error);
  detail::kill_point("after renaming " + from.string() + " to " + to.string());
  detail::sync_directory(to.parent_path().string());
}

// Deletes a checkpoint directory, DONE first and durably, so that a kill mid-delete leaves an
// incomplete directory (never loaded, pruned later), not a complete-looking torn one.
void delete_checkpoint(const fs::path& dir) {
  detail::kill_point("before pruning " + dir.string());
  std::error_code error;
  if (fs::remove(dir / kDoneFile, error)) detail::sync_directory(dir.string());
  if (error) throw_fs_error((dir / kDoneFile).string(), "cannot delete", error);
  remove_tree(dir);
  detail::kill_point("after pruning " + dir.string());
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  if (step < 0) throw std::invalid_argument("checkpoint_dir_name: negative step");
  char name[40];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  return name;
}

// Only the exact spelling checkpoint_dir_name writes: "step-120" or "step-0000120" are someone
// else's directories, not checkpoints.
std::optional<int64_t> parse_checkpoint_dir_name(const std::string& name) {
  const std::string prefix = "step-";
  if (!starts_with(name, prefix) || name.size() == prefix.size()) return std::nullopt;
  int64_t step = 0;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size();
  if (*begin < '0' || *begin > '9') return std::nullopt;  // from_chars would take a '-'
  const auto result = std::from_chars(begin, end, step);
  if (result.ec != std::errc() || result.ptr != end) return std::nullopt;
  if (checkpoint_dir_name(step) != name) return std::nullopt;
  return step;
}

std::string checkpoints_root(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints").string();
}

bool is_complete_checkpoint(const std::string& dir) { return is_complete(dir); }

std::optional<std::string> newest_complete_checkpoint(const std::string& run_dir,
                                                      int64_t before) {
  for (const CheckpointEntry& e : find_checkpoints(run_dir)) {
    if (e.complete && e.step < before) return e.path;
  }
  return std::nullopt;
}

std::vector<CheckpointEntry> find_checkpoints(const std::string& run_dir) {
  const fs::path root = checkpoints_root(run_dir);
  std::vector<CheckpointEntry> entries;
  std::error_code error;
  if (!fs::exists(root, error)) return entries;
  fs::directory_iterator it(root, error);
  if (error) throw_fs_error(root.string(), "cannot list", error);
  for (; it != fs::directory_iterator(); it.increment(error)) {
    if (error) throw_fs_error(root.string(), "cannot list", error);
    const auto step = parse_checkpoint_dir_name(it->path().filename().string());
    std::error_code type_error;
    if (!step || !it->is_directory(type_error)) continue;
    entries.push_back({it->path().string(), *step, is_complete(it->path())});
  }
  if (error) throw_fs_error(root.string(), "cannot list", error);
  std::sort(entries.begin(), entries.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step > b.step; });
  return entries;
}

std::string prepare_temporary(const std::string& run_dir, int64_t step) {
  const fs::path root = checkpoints_root(run_dir);
  std::error_code error;
  const bool created = fs::create_directories(root, error);
  if (error) throw_fs_error(root.string(), "cannot create the checkpoint directory", error);
  if (created) detail::sync_directory(root.parent_path().string());

  // Temporaries and trash of writers that were killed: never complete, never loaded.
  std::vector<fs::path> leftovers;
  fs::directory_iterator it(root, error);
  if (error) throw_fs_error(root.string(), "cannot list", error);
  for (; it != fs::directory_iterator(); it.increment(error)) {
    if (error) throw_fs_error(root.string(), "cannot list", error);
    const std::string name = it->path().filename().string();
    if (starts_with(name, kTemporaryPrefix) || starts_with(name, kTrashPrefix)) {
      leftovers.push_back(it->path());
    }
  }
  if (error) throw_fs_error(root.string(), "cannot list", error);
  for (const fs::path& leftover : leftovers) remove_tree(leftover);

  const fs::path temporary = root / (kTemporaryPrefix + checkpoint_dir_name(step));
  fs::create_directory(temporary, error);
  if (error) throw_fs_error(temporary.string(), "cannot create", error);
  return temporary.string();
}

std::string commit(const std::string& temporary, const Manifest& m,
                   const std::string& config_yaml) {
  const fs::path tmp(temporary);
  const std::string name = checkpoint_dir_name(m.step);
  if (tmp.filename() != kTemporaryPrefix + name) {
    throw std::invalid_argument("commit: " + temporary + " is not the temporary of step " +
                                std::to_string(m.step));
  }
  const fs::path root = tmp.parent_path();
  const fs::path final_dir = root / name;

  // A shard that is not what the manifest says would make a checkpoint that is refused at
  // load; better to fail the save now, while the previous checkpoints are intact.
  for (const ShardFile& shard : m.shards) {
    const fs::path file = tmp / shard.file;
    std::error_code error;
    const auto size = fs::file_size(file, error);
    if (error) throw_fs_error(file.string(), "cannot read the shard's size", error);
    if (static_cast<int64_t>(size) != shard.bytes) {
      throw UserError(
          file.string(), "",
          "is " + std::to_string(size) + " bytes, the manifest says " + std::to_string(shard.bytes),
          "the shard was not completely written (disk full?): the checkpoint is not "
          "committed");
    }
  }

  detail::write_file_durably((tmp / "config.yaml").string(), config_yaml);
  detail::write_file_durably((tmp / kManifestFile).string(), manifest_to_json(m));
  detail::sync_directory(tmp.string());

  // The step already has a directory: an incomplete one (killed before DONE) is garbage; a
  // complete one (the same step saved again) is moved aside until the new one has DONE.
  fs::path trash;
  std::error_code error;
  if (fs::exists(final_dir, error)) {
    if (is_complete(final_dir)) {
      trash = root / (kTrashPrefix + name);
      remove_tree(trash);
      rename_durably(final_dir, trash);
    } else {
      remove_tree(final_dir);
    }
  }

  rename_durably(tmp, final_dir);
  detail::write_file_durably((final_dir / kDoneFile).string(),
                             "complete: step " + std::to_string(m.step) + "\n");
  detail::sync_directory(final_dir.string());
  if (!trash.empty()) remove_tree(trash);
  return final_dir.string();
}

std::vector<std::string> prune(const std::string& run_dir, int64_t keep) {
  keep = std::max<int64_t>(keep, 1);  // the newest complete checkpoint is never deleted
  const std::vector<CheckpointEntry> entries = find_checkpoints(run_dir);  // newest first
  std::vector<std::string> deleted;
  int64_t complete_seen = 0;
  for (const CheckpointEntry& entry : entries) {
    // Incomplete directories older than the newest complete checkpoint are what killed
    // writers or prunes left; newer ones are left alone (a commit of that step replaces it).
    const bool remove = entry.complete ? ++complete_seen > keep : complete_seen > 0;
    if (!remove) continue;
    delete_checkpoint(entry.path);
    deleted.push_back(entry.path);
  }
  if (!deleted.empty()) detail::sync_directory(checkpoints_root(run_dir));
  return deleted;
}

Manifest read_manifest(const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / kManifestFile).string();
  return parse_manifest(detail::read_whole_file(path, kMaxManifestBytes), path);
}

}  // namespace baleine::ckpt
