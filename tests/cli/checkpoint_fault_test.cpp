// Issue 8's fault-injection acceptance, on the real binary: SIGKILL at any moment of a
// checkpoint write never leaves a torn checkpoint that loads, and resuming continues the run bit
// for bit; SIGTERM/SIGUSR1 stop a run after its current step with a checkpoint; a rank that dies
// ends the job (no hang) and the ledger counts the lost work; corrupt, truncated, newer-format,
// other-model and incomplete checkpoints are refused (exit 2) with the file named.
// Faults are injected with BALEINE_FAULT_INJECT (trainer/train/fault_injection.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <random>
#include <set>
#include <thread>

#include "tests/cli/checkpoint_test_support.h"
#include "trainer/cost/ledger.h"

namespace baleine::testing {
namespace {

namespace fs = std::filesystem;

// Runs f(0) ... f(count - 1) on `workers` threads. A run of the binary mostly waits (MPI start-up,
// fsync), so a few at once finish much sooner even on 2 cores. f must not use gtest assertions
// (they are checked afterwards on the main thread).
template <typename F>
void run_concurrently(size_t count, int workers, F f) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < count; i = next++) f(i);
    });
  }
  for (auto& t : pool) t.join();
}

class CheckpointFault : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir();
    data_ = prepared_corpus(dir_);
    ASSERT_FALSE(data_.empty());
    config_ = dir_ + "/run.yaml";
    write_text(config_, tiny_config(data_, dir_ + "/unused", 5));
  }
  // `baleine train` of the test's config in run dir `run`, on `ranks` processes.
  CommandResult train(const std::string& run, const std::string& args, int ranks = 1,
                      const std::string& env = "") const {
    return run_baleine("train " + config_ + " --set run.dir=" + run + " " + args,
                       launcher(ranks, env));
  }
  std::string dir_, data_, config_;
};

// ---- SIGKILL during a checkpoint write ----------------------------------------------------

constexpr int kKillSteps = 5;
// Every step saves, two are kept: the save after step 3 writes step-000003 and prunes
// step-000001, so the kill points cover shard chunks, fsyncs, the manifest, the rename, DONE
// and the pruning.
const std::string kKillArgs = "--set train.steps=5 --set checkpoint.every=1 --set checkpoint.keep=2";
constexpr int64_t kKilledSave = 3;

struct KillRepetition {
  int64_t point = 0;
  std::string run;
  CommandResult killed, resumed;
  CheckpointCensus after_kill, after_resume;
  bool temporaries_left = false;
};

using Trainer = std::function<CommandResult(const std::string& run, const std::string& args,
                                            int ranks, const std::string& env)>;

// The kill, then what a user's resume relies on (the store's view of the run dir), then the
// resume itself. Runs on a worker thread: results only, checked by check_repetition.
void kill_and_resume(KillRepetition& rep, int ranks, const std::string& layout, int killed_rank,
                     const Trainer& train) {
  rep.killed = train(rep.run, kKillArgs + layout, ranks,
                     "BALEINE_FAULT_INJECT=rank=" + std::to_string(killed_rank) + ",step=" +
                         std::to_string(kKilledSave) +
                         ",kind=kill_in_checkpoint,point=" + std::to_string(rep.point));
  rep.after_kill = census(rep.run);
  rep.resumed = train(rep.run, kKillArgs + layout, ranks, "");
  rep.after_resume = census(rep.run);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(ckpt::checkpoints_root(rep.run), ec)) {
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0) rep.temporaries_left = true;
  }
}

void check_repetition(const KillRepetition& rep, const std::string& reference, bool single) {
  SCOPED_TRACE("kill point " + std::to_string(rep.point) + " in " + rep.run);
  // The process died by SIGKILL (timeout(1) and mpirun report it as 137 or non-zero).
  if (single) {
    EXPECT_TRUE(rep.killed.signaled || rep.killed.exit_code == 137) << rep.killed.output;
  } else {
    EXPECT_NE(rep.killed.exit_code, 0) << rep.killed.output;
    EXPECT_NE(rep.killed.exit_code, 124) << "hung until timeout:\n" << rep.killed.output;
  }
  EXPECT_NE(rep.killed.output.find("SIGKILL at checkpoint kill point " + std::to_string(rep.point)),
            std::string::npos)
      << rep.killed.output;
  // Every checkpoint with DONE verifies (no torn checkpoint looks complete), and the newest is
  // the previous one or the new one, complete.
  for (const auto& problem : rep.after_kill.problems) ADD_FAILURE() << problem;
  EXPECT_TRUE(rep.after_kill.newest_complete == kKilledSave - 1 ||
              rep.after_kill.newest_complete == kKilledSave)
      << "newest complete checkpoint: step " << rep.after_kill.newest_complete;
  // The resume starts from exactly that checkpoint and ends where the reference ended.
  ASSERT_EQ(rep.resumed.exit_code, 0) << rep.resumed.output;
  EXPECT_NE(rep.resumed.output.find("resumed from " + rep.after_kill.newest_complete_path + ": step " +
                                    std::to_string(rep.after_kill.newest_complete)),
            std::string::npos)
      << rep.resumed.output;
  for (const auto& problem : rep.after_resume.problems) ADD_FAILURE() << problem;
  EXPECT_EQ(rep.after_resume.newest_complete, kKillSteps);
  EXPECT_FALSE(rep.temporaries_left) << "a killed writer's .tmp-step-* was not cleaned up";
  expect_same_trajectory(reference, rep.run, kKillSteps);
}

// The number of kill points of the save after step 3 on `rank`: a run armed past the last one
// says how many it passed.
int64_t count_kill_points(const CommandResult& dry) {
  EXPECT_EQ(dry.exit_code, 0) << dry.output;
  return number_after(dry.output, "checkpoint after step 3 passed ");
}

TEST_F(CheckpointFault, SigkillAnywhereInACheckpointWriteNeverLeavesATornCheckpoint) {
  const Trainer trainer = [this](const std::string& run, const std::string& args, int ranks,
                                const std::string& env) { return train(run, args, ranks, env); };
  CommandResult reference, dry;
  run_concurrently(2, 2, [&](size_t i) {
    if (i == 0) reference = train(dir_ + "/reference", kKillArgs);
    else dry = train(dir_ + "/dry", kKillArgs, 1,
                     "BALEINE_FAULT_INJECT=rank=0,step=3,kind=kill_in_checkpoint,point=1000000000");
  });
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const int64_t points = count_kill_points(dry);
  ASSERT_GT(points, 20) << dry.output;
  // The dry run's trajectory is the reference's: arming the hook changes nothing but chunking.
  expect_same_trajectory(dir_ + "/reference", dir_ + "/dry", kKillSteps);

  // The first and the last point, and 20 more drawn with a fixed seed (reproducible; a failing
  // point is named in the message): 10 over the whole write, where most points are chunks of
  // the shard, and 10 over its last 32 points, where the order of fsyncs, manifest, rename,
  // DONE and pruning matters (the ~30 points after the shard's chunks).
  std::set<int64_t> chosen = {0, points - 1};
  std::mt19937 rng(20240808);
  std::uniform_int_distribution<int64_t> anywhere(1, points - 2);
  std::uniform_int_distribution<int64_t> near_the_end(points - 33, points - 2);
  while (chosen.size() < 12) chosen.insert(anywhere(rng));
  while (chosen.size() < 22) chosen.insert(near_the_end(rng));
  std::vector<KillRepetition> reps;
  for (const int64_t p : chosen) {
    reps.emplace_back();
    reps.back().point = p;
    reps.back().run = dir_ + "/kill-" + std::to_string(p);
  }
  const auto start = std::chrono::steady_clock::now();
  run_concurrently(reps.size(), 4, [&](size_t i) { kill_and_resume(reps[i], 1, "", 0, trainer); });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::set<int64_t> resumed_from;
  for (const auto& rep : reps) {
    check_repetition(rep, dir_ + "/reference", true);
    resumed_from.insert(rep.after_kill.newest_complete);
  }
  // The last point comes after DONE (pruning): the new checkpoint is complete. So both
  // outcomes were exercised: the previous checkpoint and the new one.
  EXPECT_EQ(reps.back().point, points - 1);
  EXPECT_EQ(reps.back().after_kill.newest_complete, kKilledSave);
  EXPECT_EQ(reps.front().after_kill.newest_complete, kKilledSave - 1);
  std::printf("%zu kills among %lld kill points, then resumes: %.1f s\n", reps.size(),
              static_cast<long long>(points), seconds);
}

TEST_F(CheckpointFault, SigkillOfOneRankDuringATwoRankCheckpointWrite) {
  // dp 2 with ZeRO-1: both ranks write a shard (each its half of the moments); rank 1 is killed.
  const std::string layout =
      " --set parallel.dp=2 --set parallel.zero=1 --set train.micro_batch=2";
  const Trainer trainer = [this](const std::string& run, const std::string& args, int ranks,
                                const std::string& env) { return train(run, args, ranks, env); };
  CommandResult reference, dry;
  run_concurrently(2, 2, [&](size_t i) {
    if (i == 0) reference = train(dir_ + "/reference", kKillArgs + layout, 2);
    else dry = train(dir_ + "/dry", kKillArgs + layout, 2,
                     "BALEINE_FAULT_INJECT=rank=1,step=3,kind=kill_in_checkpoint,point=1000000000");
  });
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const int64_t points = count_kill_points(dry);
  ASSERT_GT(points, 3) << dry.output;
  std::mt19937 rng(8);
  const std::set<int64_t> chosen = {0, std::uniform_int_distribution<int64_t>(1, points - 2)(rng),
                                    points - 1};
  std::vector<KillRepetition> reps;
  for (const int64_t p : chosen) {
    reps.emplace_back();
    reps.back().point = p;
    reps.back().run = dir_ + "/kill-" + std::to_string(p);
  }
  run_concurrently(reps.size(), 3, [&](size_t i) { kill_and_resume(reps[i], 2, layout, 1, trainer); });
  for (const auto& rep : reps) {
    check_repetition(rep, dir_ + "/reference", false);
    std::printf("rank 1 killed at point %lld of %lld: resumed from step %lld\n",
                static_cast<long long>(rep.point), static_cast<long long>(points),
                static_cast<long long>(rep.after_kill.newest_complete));
  }
}

// ---- Stop signals -------------------------------------------------------------------------

// Slack for the process to end after its checkpoint: the ledger's end record (fsync'd), the
// final report, MPI_Finalize; measured 0.1-0.2 s on an idle machine, 2 s covers a loaded
// 2-core CI runner. Without the stop handler the run would go on for 100000 steps (minutes).
constexpr double kExitSlackSeconds = 2.0;

TEST_F(CheckpointFault, SigtermStopsAfterTheCurrentStepWithACheckpoint) {
  const std::string run = dir_ + "/run";
  BackgroundRun job({BALEINE_BINARY, "train", config_, "--set", "run.dir=" + run, "--set",
                     "train.steps=100000", "--set", "checkpoint.every=0"},
                    {"OMP_NUM_THREADS=1"}, dir_ + "/train.log");
  ASSERT_TRUE(job.started());
  ASSERT_TRUE(wait_for_lines(run + "/metrics.jsonl", 3, job, 60)) << job.output();
  const auto sent = std::chrono::steady_clock::now();
  job.signal(SIGTERM);
  ASSERT_TRUE(job.wait(60)) << "still running 60 s after SIGTERM:\n" << job.output();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  const std::string output = job.output();
  ASSERT_EQ(job.exit_code(), 4) << output;  // kExitStopped

  const auto metrics = read_metrics(run);
  ASSERT_GE(metrics.size(), 3u);
  const int64_t last = metrics.back().step;
  double longest_step = 0;
  for (const auto& m : metrics) longest_step = std::max(longest_step, m.step_s);
  const double save = longest_checkpoint_save_s(output);
  EXPECT_GT(save, 0) << output;
  // At most the rest of the step in flight, the save, and the exit.
  EXPECT_LT(seconds, longest_step + save + kExitSlackSeconds) << output;
  EXPECT_NE(output.find("stopped by SIGTERM after step " + std::to_string(last)), std::string::npos)
      << output;
  const CheckpointCensus c = census(run);
  for (const auto& problem : c.problems) ADD_FAILURE() << problem;
  EXPECT_EQ(c.newest_complete, last) << "the checkpoint holds the last step the metrics show";
  EXPECT_EQ(c.complete, 1);  // checkpoint.every=0: only the one the signal asked for
  const cost::LedgerContents ledger = cost::read_ledger(run + "/ledger.jsonl");
  ASSERT_EQ(ledger.restarts.size(), 1u);
  EXPECT_TRUE(ledger.restarts[0].ended);
  EXPECT_EQ(ledger.restarts[0].last.status, "stopped");
  EXPECT_EQ(ledger.restarts[0].last.step, last);
  std::printf("SIGTERM after step %lld: exited in %.3f s (longest step %.3f s, save %.3f s)\n",
              static_cast<long long>(last), seconds, longest_step, save);
}

// Open MPI 4.1's mpirun forwards SIGUSR1 (and SIGUSR2) to the ranks, so the ranks stop
// cleanly. SIGTERM sent to mpirun is NOT forwarded: mpirun kills the ranks before they can save
// (its own shutdown), which is why Slurm users should have the signal delivered to the tasks
// (sbatch(1) --signal without "B:" signals the job steps, not the batch shell) or use USR1.
// SIGTERM delivered to a rank itself works: that is what injected `kind=sigterm` does.
TEST_F(CheckpointFault, Sigusr1ToMpirunStopsEveryRankWithACheckpoint) {
  const std::string run = dir_ + "/run";
  BackgroundRun job({"mpirun", "--oversubscribe", "-np", "2", BALEINE_BINARY, "train", config_,
                     "--set", "run.dir=" + run, "--set", "train.steps=100000", "--set",
                     "checkpoint.every=0", "--set", "parallel.dp=2", "--set",
                     "train.micro_batch=2"},
                    {"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                     "OMP_NUM_THREADS=1"},
                    dir_ + "/train.log");
  ASSERT_TRUE(job.started());
  ASSERT_TRUE(wait_for_lines(run + "/metrics.jsonl", 3, job, 60)) << job.output();
  const auto sent = std::chrono::steady_clock::now();
  job.signal(SIGUSR1);
  ASSERT_TRUE(job.wait(60)) << "still running 60 s after SIGUSR1:\n" << job.output();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  const std::string output = job.output();
  ASSERT_EQ(job.exit_code(), 4) << output;  // mpirun passes on the ranks' kExitStopped
  const auto metrics = read_metrics(run);
  ASSERT_FALSE(metrics.empty());
  const int64_t last = metrics.back().step;
  EXPECT_NE(output.find("stopped by SIGUSR1 after step " + std::to_string(last)), std::string::npos)
      << output;
  const CheckpointCensus c = census(run);
  for (const auto& problem : c.problems) ADD_FAILURE() << problem;
  EXPECT_EQ(c.newest_complete, last);
  // mpirun's own tear-down adds about a second to the single-process bound.
  double longest_step = 0;
  for (const auto& m : metrics) longest_step = std::max(longest_step, m.step_s);
  EXPECT_LT(seconds, longest_step + longest_checkpoint_save_s(output) + kExitSlackSeconds + 3)
      << output;
  std::printf("SIGUSR1 to mpirun after step %lld: exited in %.3f s\n",
              static_cast<long long>(last), seconds);
}

// ---- A rank dies mid-run ------------------------------------------------------------------

TEST_F(CheckpointFault, ARankKilledMidRunEndsTheJobAndTheLedgerCountsTheLostWork) {
  constexpr int kTimeout = 10;
  constexpr int64_t kTokensPerStep = 8 * 32;  // global batch x seq_len of tiny_config
  // Every progress record is written (the default writes one every 30 s), so the steps after
  // the checkpoint are on record however fast they run.
  const std::string args = "--set train.steps=8 --set checkpoint.every=4 --set parallel.dp=2 "
                           "--set train.micro_batch=2 --set ledger.flush_every_s=0.000001 "
                           "--set parallel.timeout_s=" + std::to_string(kTimeout);
  const std::string run = dir_ + "/run";
  // The uninterrupted run to compare the resumed trajectory with, alongside.
  auto reference = std::async(std::launch::async, [&] { return train(dir_ + "/reference", args, 2); });
  // Rank 1 exits in the middle of step 7: the last checkpoint is step 4, so steps 5 and 6 (and
  // part of 7) are lost work the ledger must count. Step 7, not 6: rank 1 can only start step 7
  // once rank 0 has joined step 6's collectives, that is, after rank 0 recorded step 5. Dying in
  // step 6 raced rank 0's record of step 5 (mpirun kills rank 0 when rank 1 exits), and lost
  // work then read 0 on a loaded machine.
  const auto start = std::chrono::steady_clock::now();
  const auto killed = train(run, args, 2, "BALEINE_FAULT_INJECT=rank=1,step=7,kind=exit");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_NE(killed.exit_code, 124) << "the job hung until `timeout` killed it:\n" << killed.output;
  EXPECT_LT(seconds, kTimeout + 10) << killed.output;  // the watchdog's bound, as in fault_test
  EXPECT_EQ(census(run).newest_complete, 4);

  const auto resumed = train(run, args, 2);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("restart 0 in this run dir has no end record"), std::string::npos)
      << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + checkpoint_path(run, 4) + ": step 4"),
            std::string::npos)
      << resumed.output;
  ASSERT_EQ(reference.get().exit_code, 0);
  expect_same_trajectory(dir_ + "/reference", run, 8);

  const cost::LedgerContents ledger = cost::read_ledger(run + "/ledger.jsonl");
  EXPECT_TRUE(ledger.problems.empty()) << ledger.problems.front().message;
  ASSERT_EQ(ledger.restarts.size(), 2u);
  const cost::RestartRecord& dead = ledger.restarts[0];
  EXPECT_FALSE(dead.ended);
  ASSERT_TRUE(dead.has_checkpoint);
  EXPECT_EQ(dead.last_checkpoint.step, 4);
  ASSERT_TRUE(dead.has_lost);
  EXPECT_EQ(dead.lost.found_by, 1);
  const double lost = dead.segments[static_cast<size_t>(cost::Segment::kLostWork)];
  EXPECT_GT(lost, 0);
  // Lost: what it recorded after its last checkpoint, plus what it ran after its last record.
  const double recorded_after = cost::total_seconds(dead.last.segments) -
                                cost::total_seconds(dead.last_checkpoint.segments);
  EXPECT_NEAR(lost, recorded_after + dead.lost.unrecorded_device_s, 1e-6);
  EXPECT_EQ(dead.useful_tokens, 4 * kTokensPerStep);  // the work up to the checkpoint counts
  EXPECT_TRUE(ledger.restarts[1].ended);
  EXPECT_EQ(ledger.restarts[1].last.status, "completed");
  std::printf("rank 1 died in step 7: job ended in %.2f s; %.4f device-s lost\n", seconds, lost);
}

// ---- Refusals -----------------------------------------------------------------------------

class CheckpointRefusal : public CheckpointFault {
 protected:
  void SetUp() override {
    CheckpointFault::SetUp();
    run_ = dir_ + "/run";
    // Checkpoints at steps 2 and 4; the tests damage step 4 and resume to step 6.
    const auto first = train(run_, "--set train.steps=4 --set checkpoint.every=2");
    ASSERT_EQ(first.exit_code, 0) << first.output;
    newest_ = checkpoint_path(run_, 4);
    older_ = checkpoint_path(run_, 2);
    ASSERT_EQ(census(run_).complete, 2);
  }
  // The resume that must be refused: exit 2 (a user error, not a crash).
  CommandResult refused(const std::string& extra = "") {
    const auto r = train(run_, "--set train.steps=6 --set checkpoint.every=2 " + extra);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_EQ(r.output.find("resumed from"), std::string::npos) << r.output;
    return r;
  }
  void expect_older_offered(const CommandResult& r) {
    EXPECT_NE(r.output.find("the next older complete checkpoint is " + older_), std::string::npos)
        << r.output;
  }
  std::string run_, newest_, older_;
};

TEST_F(CheckpointRefusal, AFlippedByteIsAChecksumErrorNamingTheShard) {
  const std::string shard = newest_ + "/shard-00000.bin";
  flip_byte(shard, static_cast<int64_t>(fs::file_size(shard) / 3));
  const auto r = refused();
  EXPECT_NE(r.output.find("checksum"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(shard), std::string::npos) << r.output;
  expect_older_offered(r);

  // The offered checkpoint works, and the run goes on exactly as an uninterrupted one, its
  // metrics.jsonl still holding steps 1-2: the refused attempt in between must not cost the
  // run its history.
  const auto reference = train(dir_ + "/reference", "--set train.steps=6 --set checkpoint.every=2");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const auto resumed = train(run_, "--set train.steps=6 --set checkpoint.every=2 --resume-from " + older_);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + older_ + ": step 2"), std::string::npos)
      << resumed.output;
  expect_same_trajectory(dir_ + "/reference", run_, 6);
}

TEST_F(CheckpointRefusal, ATruncatedShardIsRefused) {
  const std::string shard = newest_ + "/shard-00000.bin";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  const auto r = refused();
  EXPECT_NE(r.output.find(shard), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  expect_older_offered(r);
}

TEST_F(CheckpointRefusal, ANewerFormatVersionIsRefused) {
  const std::string manifest = newest_ + "/manifest.json";
  std::string text = read_text(manifest);
  const auto at = text.find("\"version\": 1");
  ASSERT_NE(at, std::string::npos) << text.substr(0, 200);
  text.replace(at, 12, "\"version\": 99");
  write_text(manifest, text);
  const auto r = refused();
  EXPECT_NE(r.output.find(manifest), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("99"), std::string::npos) << r.output;
  expect_older_offered(r);
}

TEST_F(CheckpointRefusal, ACheckpointOfAnotherModelIsRefused) {
  const auto r = refused("--set model.hidden=64");
  EXPECT_NE(r.output.find(newest_), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoint of a different model: model.hidden: 32 in the checkpoint, "
                          "64 in this config"),
            std::string::npos)
      << r.output;
}

TEST_F(CheckpointRefusal, ResumingFromACheckpointWithoutDoneIsRefused) {
  fs::remove(newest_ + "/DONE");
  const auto r = refused("--resume-from " + newest_);
  EXPECT_NE(r.output.find(newest_), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not a complete checkpoint"), std::string::npos) << r.output;
  // Without --resume-from, the incomplete one is passed over for the older complete one.
  const auto resumed = train(run_, "--set train.steps=6 --set checkpoint.every=2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + older_ + ": step 2"), std::string::npos)
      << resumed.output;
}

}  // namespace
}  // namespace baleine::testing
