// The checkpoint store end to end on the file system: fake ranks write slices of random tensors
// through the whole protocol (prepare → ShardWriter + index → read_shard_indexes → commit), and
// the checkpoint reads back exactly from any ranges; damaged shards are reported with their
// paths; a kill at every single point of the protocol leaves no torn checkpoint that looks
// complete; prune keeps the newest.
#include "trainer/checkpoint/checkpoint_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/checkpoint/checkpoint_test_support.h"
#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"

namespace baleine::ckpt {
namespace {

namespace fs = std::filesystem;
using baleine::testing::expect_user_error;
using baleine::testing::scratch_dir;
using testing::expect_tensors;
using testing::hidden_entries;
using testing::Model;
using testing::random_model;
using testing::shard_path;
using testing::Slice;
using testing::write_checkpoint;

TEST(CheckpointStore, DirectoryNames) {
  EXPECT_EQ(checkpoint_dir_name(0), "step-000000");
  EXPECT_EQ(checkpoint_dir_name(120), "step-000120");
  EXPECT_EQ(checkpoint_dir_name(1234567), "step-1234567");
  for (const int64_t step : {int64_t{0}, int64_t{120}, int64_t{999999}, int64_t{1234567},
                             std::numeric_limits<int64_t>::max()}) {
    EXPECT_EQ(parse_checkpoint_dir_name(checkpoint_dir_name(step)), step);
  }
  for (const char* other :
       {"step-120", "step-0000120", "step--00001", "step-", "step-00012a", "xstep-000120",
        "step-+00120", "step-99999999999999999999", ".tmp-step-000120", "step-000120.old"}) {
    EXPECT_FALSE(parse_checkpoint_dir_name(other).has_value()) << other;
  }
  EXPECT_EQ(checkpoints_root("/runs/a"), "/runs/a/checkpoints");
}

TEST(CheckpointStore, ThreeRanksWriteAndAnyRangeReadsBack) {
  const std::string run = scratch_dir();
  // 4 ranks, the last holding nothing: it writes no shard and no index.
  const Model model = random_model(1, /*ranks=*/4, /*writing_ranks=*/3);
  const std::string dir = write_checkpoint(run, 120, model);
  EXPECT_EQ(dir, (fs::path(checkpoints_root(run)) / "step-000120").string());

  const auto entries = find_checkpoints(run);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, dir);
  EXPECT_EQ(entries[0].step, 120);
  EXPECT_TRUE(entries[0].complete);
  EXPECT_TRUE(hidden_entries(run).empty());

  std::set<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.insert(entry.path().filename());
  const std::set<std::string> expected_files = {
      "DONE",           "manifest.json", "config.yaml", "shard-00000.bin", "shard-00001.bin",
      "shard-00002.bin"};
  EXPECT_EQ(files, expected_files);  // the indexes are gone

  const Manifest m = read_manifest(dir);
  EXPECT_EQ(m.step, 120);
  EXPECT_EQ(m.seed, 0xFEEDFACECAFEBEEFull);
  ASSERT_EQ(m.shards.size(), 3u);
  size_t slices = 0;
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(m.shards[rank].rank, rank);
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(shard_path(dir, rank))), m.shards[rank].bytes);
    slices += model.slices[rank].size();
  }
  EXPECT_EQ(m.records.size(), slices);
  EXPECT_EQ(verify_shards(dir, m), "");
  for (int offset = 0; offset < 3; ++offset) EXPECT_EQ(verify_shards(dir, m, offset, 3), "");
  expect_tensors(dir, model.tensors, 2);
}

TEST(CheckpointStore, ReaderRefusesWhatTheRecordsDoNotHold) {
  const std::string run = scratch_dir();
  const Model model = random_model(3);
  const std::string dir = write_checkpoint(run, 5, model);
  Manifest m = read_manifest(dir);
  std::vector<float> buffer(64 * 40);
  {
    const TensorReader reader(dir, m);
    expect_user_error([&] { reader.read("embed", Kind::kAdamM, DType::kF32, 0, 4, buffer.data()); },
                      {dir, "embed (adam_m)", "stored as bf16, not f32"});
    expect_user_error([&] { reader.read("nope", Kind::kParam, DType::kF32, 0, 4, buffer.data()); },
                      {dir, "nope (param)", "not in the checkpoint"});
    expect_user_error([&] { reader.shape("embed", Kind::kAdamV); }, {dir, "embed"});
    EXPECT_FALSE(reader.has("embed", Kind::kAdamV));
    expect_user_error(
        [&] { reader.read("embed", Kind::kParam, DType::kF32, 0, 64 * 40 + 1, buffer.data()); },
        {dir, "embed (param)", "elements [2560, 2561) are in no record"});
  }
  // Drop the record holding embed's element 1000: that hole is named exactly.
  const auto hole = std::find_if(m.records.begin(), m.records.end(), [](const Record& r) {
    return r.name == "embed" && r.kind == Kind::kParam && r.begin <= 1000 && 1000 < r.end;
  });
  ASSERT_NE(hole, m.records.end());
  const std::string gap =
      "[" + std::to_string(hole->begin) + ", " + std::to_string(hole->end) + ")";
  m.records.erase(hole);
  const TensorReader reader(dir, m);
  expect_user_error(
      [&] { reader.read("embed", Kind::kParam, DType::kF32, 0, 64 * 40, buffer.data()); },
      {dir, "embed (param)", "elements " + gap + " are in no record"});
}

TEST(CheckpointStore, FlippedByteIsReportedWithTheFile) {
  const std::string run = scratch_dir();
  const std::string dir = write_checkpoint(run, 7, random_model(4));
  const Manifest m = read_manifest(dir);
  const std::string victim = shard_path(dir, 1);
  {
    std::fstream file(victim, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(m.shards[1].bytes / 2);
    const char byte = static_cast<char>(file.get());
    file.seekp(m.shards[1].bytes / 2);
    file.put(static_cast<char>(byte ^ 0x10));
  }
  const std::string problem = verify_shards(dir, m);
  EXPECT_NE(problem.find(victim + ": checksum mismatch (expected "), std::string::npos) << problem;
  // Split over 2 "ranks": only the one checking shard 1 finds it.
  EXPECT_EQ(verify_shards(dir, m, 0, 2), "");
  EXPECT_NE(verify_shards(dir, m, 1, 2).find(victim), std::string::npos);
}

TEST(CheckpointStore, TruncatedShardIsReported) {
  const std::string run = scratch_dir();
  const Model model = random_model(5);
  const std::string dir = write_checkpoint(run, 7, model);
  const Manifest m = read_manifest(dir);
  const std::string victim = shard_path(dir, 2);
  fs::resize_file(victim, static_cast<uintmax_t>(m.shards[2].bytes - 10));
  const std::string problem = verify_shards(dir, m);
  EXPECT_EQ(problem, victim + " is " + std::to_string(m.shards[2].bytes - 10) +
                         " bytes, the manifest says " + std::to_string(m.shards[2].bytes) +
                         " (truncated)");
  // Reading the lost bytes fails too, naming the shard; the record that ended the shard is it.
  const Record* last = nullptr;
  for (const Record& r : m.records) {
    if (r.shard == 2 && r.begin < r.end && (!last || r.offset > last->offset)) last = &r;
  }
  ASSERT_NE(last, nullptr);
  const TensorReader reader(dir, m);
  std::vector<unsigned char> buffer(static_cast<size_t>(last->bytes()));
  expect_user_error(
      [&] {
        reader.read(last->name, last->kind, last->dtype, last->begin, last->end, buffer.data());
      },
      {dir, last->name, victim, "truncated"});
}

TEST(CheckpointStore, MissingShardIsReported) {
  const std::string run = scratch_dir();
  const std::string dir = write_checkpoint(run, 7, random_model(6));
  const Manifest m = read_manifest(dir);
  fs::remove(shard_path(dir, 0));
  EXPECT_EQ(verify_shards(dir, m), shard_path(dir, 0) + " is missing");
}

TEST(CheckpointStore, IncompleteAndForeignDirectoriesAreTold) {
  const std::string run = scratch_dir();
  write_checkpoint(run, 10, random_model(7));
  const std::string newer = write_checkpoint(run, 20, random_model(8));
  fs::remove(fs::path(newer) / "DONE");  // as a kill between rename and DONE leaves it
  const fs::path root = checkpoints_root(run);
  fs::create_directories(root / "step-30");           // not the spelling baleine writes
  fs::create_directories(root / ".tmp-step-000040");  // a writer's temporary
  std::ofstream(root / "step-000050") << "a file, not a directory";
  fs::create_directories(root / "step-000060");  // DONE but no manifest
  std::ofstream(root / "step-000060" / "DONE") << "";

  const auto entries = find_checkpoints(run);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].step, 60);
  EXPECT_FALSE(entries[0].complete);
  EXPECT_EQ(entries[1].step, 20);
  EXPECT_FALSE(entries[1].complete);
  EXPECT_EQ(entries[2].step, 10);
  EXPECT_TRUE(entries[2].complete);
  EXPECT_TRUE(find_checkpoints(scratch_dir() + "/no-such-run").empty());
  expect_user_error([&] { read_manifest((root / "step-000060").string()); },
                    {(root / "step-000060" / "manifest.json").string(), "is missing"});
}

TEST(CheckpointStore, PrepareTemporaryRemovesLeftovers) {
  const std::string run = scratch_dir();
  const fs::path root = checkpoints_root(run);
  fs::create_directories(root / ".tmp-step-000005" / "sub");
  std::ofstream(root / ".tmp-step-000005" / "shard-00000.bin") << "torn";
  fs::create_directories(root / ".trash-step-000003");
  const std::string temporary = prepare_temporary(run, 7);
  EXPECT_EQ(temporary, (root / ".tmp-step-000007").string());
  EXPECT_EQ(hidden_entries(run), std::vector<std::string>{".tmp-step-000007"});
  EXPECT_TRUE(fs::is_empty(temporary));
}

TEST(CheckpointStore, CommitReplacesTheSameStep) {
  const std::string run = scratch_dir();
  write_checkpoint(run, 10, random_model(9));
  const Model second = random_model(10);
  const std::string dir = write_checkpoint(run, 10, second);
  const auto entries = find_checkpoints(run);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].complete);
  EXPECT_TRUE(hidden_entries(run).empty());
  expect_tensors(dir, second.tensors, 11);
}

TEST(CheckpointStore, CommitRefusesAShardOfTheWrongSize) {
  const std::string run = scratch_dir();
  const std::string temporary = prepare_temporary(run, 3);
  ShardWriter writer(temporary, 0);
  std::vector<float> data(100, 1.5f);
  Record record;
  record.name = "w";
  record.shape = {100};
  record.end = 100;
  writer.append(record, data.data());
  const ShardFile shard = writer.finish();
  Manifest m;
  m.step = 3;
  m.shards = {shard};
  m.records = writer.records();
  fs::resize_file(shard_path(temporary, 0), 200);
  expect_user_error([&] { commit(temporary, m, ""); },
                    {shard_path(temporary, 0), "is 200 bytes, the manifest says 400"});
  EXPECT_TRUE(find_checkpoints(run).empty());
}

TEST(CheckpointStore, ShardIndexesAreChecked) {
  const std::string run = scratch_dir();
  const std::string temporary = prepare_temporary(run, 3);
  std::vector<float> data(100, 2.5f);
  for (int rank = 0; rank < 2; ++rank) {
    ShardWriter writer(temporary, rank);
    Record record;
    record.name = "w";
    record.shape = {100};
    record.begin = rank == 0 ? 0 : 40;  // ranks 0 and 1 both claim elements [40, 60)
    record.end = rank == 0 ? 60 : 100;
    writer.append(record, data.data());
    write_shard_index(temporary, writer.finish(), writer.records());
  }
  Manifest m;
  expect_user_error([&] { read_shard_indexes(temporary, 2, m); },
                    {temporary, "elements [40, 100) of w (param) overlap [0, 60)"});
  const std::string index = (fs::path(temporary) / "index-00001.json").string();
  std::ofstream(index) << "{\"version\": 1, \"shard\": {\"file\": \"shard-00001.bin\"}}";
  Manifest again;
  expect_user_error([&] { read_shard_indexes(temporary, 2, again); },
                    {index, "shard.rank", "is missing"});
}

TEST(CheckpointStore, PruneKeepsTheNewestComplete) {
  const std::string run = scratch_dir();
  const Model model = random_model(12, 2, 2);
  std::vector<std::string> dirs;
  for (const int64_t step : {10, 20, 25, 30, 40, 50}) {
    dirs.push_back(write_checkpoint(run, step, model));
  }
  fs::remove(fs::path(dirs[2]) / "DONE");  // step 25: incomplete, older than the newest
  fs::remove(fs::path(dirs[5]) / "DONE");  // step 50: incomplete, newer than all complete
  const auto deleted = prune(run, 2);
  EXPECT_EQ(deleted, (std::vector<std::string>{dirs[2], dirs[1], dirs[0]}));
  std::vector<int64_t> left;
  for (const auto& entry : find_checkpoints(run)) left.push_back(entry.step);
  EXPECT_EQ(left, (std::vector<int64_t>{50, 40, 30}));
  // keep < 1 still keeps the newest complete one.
  EXPECT_EQ(prune(run, 0), std::vector<std::string>{dirs[3]});
  const auto after = find_checkpoints(run);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[1].step, 40);
  EXPECT_TRUE(after[1].complete);
  EXPECT_TRUE(prune(run, 1).empty());
}

struct Killed {
  int64_t point;
};

// A kill at each point of the protocol in turn (the hook throws there, as SIGKILL would stop
// the process there): step 10 is complete beforehand, the kill interrupts saving step 20 and
// pruning with keep = 1. Whatever the point, every checkpoint that looks complete reads back
// exactly; before DONE is written only step 10 does; the next prepare_temporary removes what
// the killed save left, and the next save completes.
TEST(CheckpointStore, KillAtEveryPointLeavesNoTornCheckpoint) {
  const std::string scratch = scratch_dir();
  // One cut per tensor: fewer records, so fewer points (each costs a partial save, whose
  // fsyncs dominate this test's time), while embed's pieces still span several chunks.
  const Model older = random_model(20, 3, 3, 1), newer = random_model(21, 3, 3, 1),
              next = random_model(22, 3, 3, 1);
  const std::string base = scratch + "/base";
  write_checkpoint(base, 10, older);
  const auto save_and_prune = [&](const std::string& run) {
    write_checkpoint(run, 20, newer);
    prune(run, 1);
  };

  // A dry run lists the points.
  std::vector<std::string> points;
  fs::copy(base, scratch + "/dry", fs::copy_options::recursive);
  set_kill_point_hook([&](int64_t point, const char* what) {
    EXPECT_EQ(point, static_cast<int64_t>(points.size()));
    points.push_back(what);
  });
  save_and_prune(scratch + "/dry");
  set_kill_point_hook(nullptr);
  const auto done_point = std::find_if(points.begin(), points.end(), [](const std::string& w) {
    return w.find("DONE") != std::string::npos;
  });
  ASSERT_NE(done_point, points.end());
  const int64_t first_done_point = done_point - points.begin();
  // 4 KiB chunks while a hook is set: two points around each chunk of each record, and some
  // record spans several chunks (a kill can land inside a record).
  int64_t chunks = 0, records = 0;
  for (const auto& rank : newer.slices) {
    for (const Slice& s : rank) {
      const int64_t bytes = (s.end - s.begin) * dtype_bytes(newer.tensors[s.tensor].dtype);
      chunks += (bytes + 4095) / 4096;
      records += 1;
    }
  }
  EXPECT_GT(chunks, records);
  EXPECT_EQ(
      std::count_if(points.begin(), points.end(),
                    [](const std::string& w) { return w.find("chunk") != std::string::npos; }),
      2 * chunks);
  const auto count = [&](const char* what) {
    return std::count_if(points.begin(), points.end(),
                         [&](const std::string& w) { return w.find(what) != std::string::npos; });
  };
  EXPECT_EQ(count("fsync of directory"), 2 * 5);  // tmp, root after rename, step dir, 2 × prune
  EXPECT_EQ(count("renaming"), 2);
  EXPECT_EQ(count("pruning"), 2);

  const int64_t n = static_cast<int64_t>(points.size());
  for (int64_t k = 0; k < n; ++k) {
    SCOPED_TRACE("killed at point " + std::to_string(k) + " of " + std::to_string(n) + ": " +
                 points[k]);
    const std::string run = scratch + "/kill-" + std::to_string(k);
    fs::copy(base, run, fs::copy_options::recursive);
    set_kill_point_hook([k](int64_t point, const char*) {
      if (point == k) throw Killed{point};
    });
    EXPECT_THROW(save_and_prune(run), Killed);
    set_kill_point_hook(nullptr);

    std::vector<int64_t> complete;
    for (const auto& entry : find_checkpoints(run)) {
      if (!entry.complete) continue;
      complete.push_back(entry.step);
      const Manifest m = read_manifest(entry.path);
      ASSERT_EQ(verify_shards(entry.path, m), "");
      expect_tensors(entry.path, entry.step == 10 ? older.tensors : newer.tensors, 1);
    }
    if (k <= first_done_point) {
      EXPECT_EQ(complete, std::vector<int64_t>{10});
    } else {
      ASSERT_FALSE(complete.empty());
      EXPECT_EQ(complete.front(), 20);
    }

    const std::string temporary = prepare_temporary(run, 30);
    EXPECT_EQ(hidden_entries(run), std::vector<std::string>{".tmp-step-000030"});
    // Completing the next save everywhere would double the fsyncs: around DONE, where the
    // leftovers differ most, and at every 8th point.
    if (k % 8 == 0 || std::abs(k - first_done_point) <= 2 || k == n - 1) {
      const std::string dir = write_checkpoint(run, 30, next);
      EXPECT_TRUE(hidden_entries(run).empty());
      EXPECT_EQ(find_checkpoints(run).front().path, dir);
      EXPECT_TRUE(find_checkpoints(run).front().complete);
    }
    fs::remove_all(run);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace baleine::ckpt
