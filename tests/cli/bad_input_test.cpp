// Bad input never crashes: every case below must exit with status 2 and a message that names
// the place (file:line, key path, option or path) and, where there is one, a HINT.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/cli/cli_support.h"

namespace baleine::testing {
namespace {

class BadInput : public ::testing::Test {
 protected:
  // ctest runs every test as its own process, in parallel: each gets its own directory.
  void SetUp() override {
    dir_ = scratch_dir();
    data_ = prepared_corpus(dir_);
    ASSERT_FALSE(data_.empty()) << "data prepare failed";
  }
  // Writes a config and runs `train` on it.
  CommandResult train_with(const std::string& yaml, const std::string& extra = "") {
    const std::string path = dir_ + "/" +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name() +
                             ".yaml";
    write_text(path, yaml);
    path_ = path;
    return run_baleine("train " + path + " " + extra);
  }
  void expect_invalid(const CommandResult& r, const std::string& must_contain) {
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(must_contain), std::string::npos)
        << "expected '" << must_contain << "' in:\n" << r.output;
    EXPECT_EQ(r.output.find("internal error:"), std::string::npos) << r.output;
  }
  std::string dir_, data_, path_;
};

TEST_F(BadInput, MalformedYamlNamesFileAndLine) {
  const auto r = train_with("run:\n  name: x\nmodel: [unclosed\n");
  expect_invalid(r, path_ + ":");
}

TEST_F(BadInput, UnknownKeySuggestsTheRightOne) {
  auto yaml = tiny_config(data_, dir_ + "/run");
  yaml.replace(yaml.find("steps:"), 6, "stpes:");
  const auto r = train_with(yaml);
  expect_invalid(r, "train.stpes");
  expect_invalid(r, "steps");
  expect_invalid(r, path_ + ":");
}

TEST_F(BadInput, WrongTypeNamesTheKey) {
  auto yaml = tiny_config(data_, dir_ + "/run");
  yaml.replace(yaml.find("hidden: 32"), 10, "hidden: big");
  const auto r = train_with(yaml);
  expect_invalid(r, "model.hidden");
  expect_invalid(r, path_ + ":");
}

TEST_F(BadInput, OutOfRangeValueNamesTheKey) {
  auto yaml = tiny_config(data_, dir_ + "/run");
  yaml.replace(yaml.find("top_k: 2"), 8, "top_k: 9");
  const auto r = train_with(yaml);
  expect_invalid(r, "model.moe.top_k");
}

TEST_F(BadInput, BadOverrideNamesTheOverride) {
  const auto r = train_with(tiny_config(data_, dir_ + "/run"), "--set train.steps=abc");
  expect_invalid(r, "train.steps");
  expect_invalid(r, "--set");
}

TEST_F(BadInput, MissingDataPathNamesTheKeyAndHintsAtPrepare) {
  const auto r = train_with(tiny_config(dir_ + "/no-such-dir", dir_ + "/run"));
  expect_invalid(r, "data.train");
  expect_invalid(r, "HINT:");
  expect_invalid(r, "data prepare");
}

TEST_F(BadInput, TruncatedShardNamesTheFile) {
  const std::string broken = dir_ + "/broken";
  std::filesystem::create_directories(broken);
  std::filesystem::copy_file(data_ + "/train_000000.bin", broken + "/train_000000.bin");
  std::filesystem::copy_file(data_ + "/val_000000.bin", broken + "/val_000000.bin");
  const auto size = std::filesystem::file_size(broken + "/train_000000.bin");
  std::filesystem::resize_file(broken + "/train_000000.bin", size - 101);
  const auto r = train_with(tiny_config(broken, dir_ + "/run"));
  expect_invalid(r, broken + "/train_000000.bin");
}

TEST_F(BadInput, MissingConfigFile) {
  expect_invalid(run_baleine("train " + dir_ + "/nope.yaml"), dir_ + "/nope.yaml");
}

TEST_F(BadInput, UnknownSubcommandSuggests) {
  const auto r = run_baleine("trian configs/quickstart.yaml");
  expect_invalid(r, "trian");
  expect_invalid(r, "did you mean 'train'");
}

TEST_F(BadInput, UnknownOptions) {
  expect_invalid(run_baleine("train x.yaml --sett a=1"), "--sett");
  expect_invalid(run_baleine("data prepare --inptu x --output y"), "--inptu");
  expect_invalid(run_baleine("data prepar"), "prepar");
  expect_invalid(run_baleine("data prepare --input " + dir_ + "/missing.txt --output " + dir_ +
                             "/out"),
                 dir_ + "/missing.txt");
  expect_invalid(run_baleine("train"), "missing CONFIG.yaml");
  expect_invalid(run_baleine(""), "usage");
}

TEST_F(BadInput, InvalidParallelLayoutShowsTheArithmetic) {
  auto yaml = tiny_config(data_, dir_ + "/run") + "parallel:\n  dp: 2\n  ep: 4\n";
  const auto r = train_with(yaml);
  expect_invalid(r, "parallel.ep (4) must divide parallel.dp (2): 2 % 4 = 2");
}

// Checked when the config loads: before MPI splits a group, before any rank allocates a model
// or creates the run directory.
TEST_F(BadInput, MisconfiguredPipelineExitsBeforeAnythingStarts) {
  const std::string yaml = tiny_config(data_, dir_ + "/run");
  auto r = train_with(yaml, "--set parallel.pp=3 --set parallel.schedule=dualpipe");
  expect_invalid(r, "DualPipe needs an even number of pipeline ranks, got 3");
  r = train_with(yaml, "--set parallel.pp=2 --set parallel.schedule=dualpipe");
  expect_invalid(r, "micro-batches");  // 2 per step, DualPipe on 2 ranks needs 4
  r = train_with(yaml, "--set parallel.pp=3");
  expect_invalid(r, "model.layers (2) must be >= the 3 pipeline stages");
  EXPECT_EQ(r.output.find("model:"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/run")) << "nothing may be created";
}

// No machine CI runs on has a GPU; whichever reason applies (no backend, no GPU), the run stops
// before the run directory exists.
TEST_F(BadInput, CudaDeviceWithoutAGpuExitsBeforeAnythingStarts) {
  const auto r = train_with(tiny_config(data_, dir_ + "/run"), "--set device=cuda");
  expect_invalid(r, "device: cuda");
  expect_invalid(r, "device: cpu");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/run")) << "nothing may be created";
}

TEST_F(BadInput, MpiWorldThatDoesNotMatchTheLayoutShowsTheArithmetic) {
  write_text(dir_ + "/two.yaml", tiny_config(data_, dir_ + "/run"));
  const auto r = run_baleine("train " + dir_ + "/two.yaml",
                             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                             "mpirun --oversubscribe -np 2");
  expect_invalid(r, "the job has 2 processes but parallel.pp x parallel.dp = 1 x 1 = 1");
}

TEST(Cli, HelpAndVersion) {
  auto r = run_baleine("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("train CONFIG.yaml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("data prepare"), std::string::npos) << r.output;
  r = run_baleine("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("baleine 0.", 0), 0u) << r.output;
  EXPECT_EQ(run_baleine("train --help").exit_code, 0);
  EXPECT_EQ(run_baleine("data prepare --help").exit_code, 0);
}

}  // namespace
}  // namespace baleine::testing
