// The config loader's happy paths: defaults, values from YAML, --set overrides, the table and
// the YAML round trip. Error paths are in config_errors_test.cpp.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/config/config_test_support.h"
#include "trainer/config/did_you_mean.h"
#include "trainer/config/fields.h"
#include "trainer/config/value_text.h"

namespace baleine::config {
namespace {

using testing::contains;
using testing::kMinimal;
using testing::load;

// Every key's value as text, keyed by path: two configs are equal when these maps are.
// value_text writes doubles in their shortest exact form, so equal text means equal bits.
std::map<std::string, std::string> field_texts(const RunConfig& config) {
  std::map<std::string, std::string> texts;
  for_each_field(config, [&](const char* path, const auto& member) {
    texts[path] = value_text(member);
  });
  return texts;
}

TEST(ConfigDefaults, MissingKeysKeepTheDefaultsOfConfigH) {
  const RunConfig config = load(kMinimal);
  RunConfig expected;
  expected.data.train = "shards/train";
  expected.run.dir = "runs/baleine";
  EXPECT_EQ(field_texts(config), field_texts(expected));
  EXPECT_EQ(config.source, "q.yaml");
  EXPECT_EQ(config.grad_accum_steps(), 1);
}

TEST(ConfigDefaults, RunDirFollowsTheRunNameUnlessSet) {
  EXPECT_EQ(load(std::string(kMinimal) + "run:\n  name: moe-a\n").run.dir, "runs/moe-a");
  EXPECT_EQ(load(std::string(kMinimal) + "run:\n  name: moe-a\n  dir: /tmp/x\n").run.dir,
            "/tmp/x");
  EXPECT_EQ(load(kMinimal, {"run.name=b"}).run.dir, "runs/b");
}

TEST(ConfigDefaults, EmptySectionsAndCommentsAreFine) {
  const RunConfig config = load("# a comment\nrun:\nmodel:\n  moe:\n" + std::string(kMinimal));
  EXPECT_EQ(config.model.moe.top_k, 2);
}

TEST(ConfigValues, EveryTypeIsRead) {
  const RunConfig config = load(R"(
run: {name: exp1, seed: 18446744073709551615}
model:
  hidden: 256
  heads: 8
  rope_theta: 5e5
  norm_eps: 1e-5
  moe: {routed_experts: 16, top_k: 4, score: softmax, normalize: false, route_scale: 2}
data: {train: "shards/*.bin", val: val.bin}
train:
  steps: +200
  global_batch: 32
  lr: {peak: 3e-4, min: 0, schedule: constant}
  adamw: {beta2: .99}
)");
  EXPECT_EQ(config.run.name, "exp1");
  EXPECT_EQ(config.run.seed, 18446744073709551615ull);
  EXPECT_EQ(config.model.hidden, 256);
  EXPECT_EQ(config.model.head_dim(), 32);
  EXPECT_EQ(config.model.rope_theta, 500000.0);
  EXPECT_EQ(config.model.norm_eps, 1e-5);
  EXPECT_EQ(config.model.moe.routed_experts, 16);
  EXPECT_EQ(config.model.moe.top_k, 4);
  EXPECT_EQ(config.model.moe.score, "softmax");
  EXPECT_FALSE(config.model.moe.normalize);
  EXPECT_EQ(config.model.moe.route_scale, 2.0);  // an integer is a valid double
  EXPECT_EQ(config.data.train, "shards/*.bin");
  EXPECT_EQ(config.data.val, "val.bin");
  EXPECT_EQ(config.train.steps, 200);
  EXPECT_EQ(config.grad_accum_steps(), 4);
  EXPECT_EQ(config.train.lr.peak, 3e-4);
  EXPECT_EQ(config.train.lr.min, 0.0);
  EXPECT_EQ(config.train.lr.schedule, "constant");
  EXPECT_EQ(config.train.adamw.beta2, 0.99);
}

TEST(ConfigValues, AllDenseModelNeedsNoExperts) {
  const RunConfig config =
      load(kMinimal, {"model.dense_layers=4", "model.moe.routed_experts=0", "model.moe.top_k=0"});
  EXPECT_EQ(config.model.moe.routed_experts, 0);
}

TEST(ConfigOverrides, ReplaceFileValuesAndLaterOnesWin) {
  const RunConfig config =
      load(std::string(kMinimal) + "train:\n  steps: 30\n",
           {"train.steps=50", "train.lr.peak=1e-3", "model.moe.score=softmax", "train.steps=60"});
  EXPECT_EQ(config.train.steps, 60);
  EXPECT_EQ(config.train.lr.peak, 1e-3);
  EXPECT_EQ(config.model.moe.score, "softmax");
}

TEST(ConfigOverrides, CreateMissingSections) {
  const RunConfig config = load(kMinimal, {"model.moe.top_k=1", "train.adamw.eps=1e-6"});
  EXPECT_EQ(config.model.moe.top_k, 1);
  EXPECT_EQ(config.model.moe.routed_experts, 8);
  EXPECT_EQ(config.train.adamw.eps, 1e-6);
}

TEST(ConfigOverrides, SupplyWhatTheFileLacksOrFixWhatItGotWrong) {
  EXPECT_EQ(load("train:\n  steps: 50\n", {"data.train=a.bin"}).data.train, "a.bin");
  // Overrides edit the tree before any value is typed, so a bad file value can be replaced.
  EXPECT_EQ(load(std::string(kMinimal) + "train:\n  steps: abc\n", {"train.steps=70"}).train.steps,
            70);
}

TEST(ConfigOrigins, EveryKeyKnowsWhereItWasSet) {
  // Used by errors found after loading (e.g. data.train matching no shard).
  const RunConfig config = load(std::string(kMinimal) + "train:\n  steps: 50\n",
                                {"model.hidden=64"});
  EXPECT_EQ(config.where("data.train"), "q.yaml:2");
  EXPECT_EQ(config.where("train.steps"), "q.yaml:4");
  EXPECT_EQ(config.where("model.hidden"), "--set model.hidden=64");
  EXPECT_EQ(config.where("train.seq_len"), "q.yaml:3");  // a default: its section's line
  EXPECT_EQ(config.where("log.every"), "q.yaml");        // no section: the file
}

TEST(ConfigOverrides, ValuesAreYaml) {
  const RunConfig config = load(std::string(kMinimal) + "model:\n  moe: {top_k: 1, score: softmax}\n",
                                {"run.name=\"2024\"", "model.moe={top_k: 3, normalize: false}",
                                 "data.val=", " train.seq_len = 64"});
  EXPECT_EQ(config.run.name, "2024");
  // A map VALUE sets its keys and keeps the section's others.
  EXPECT_EQ(config.model.moe.top_k, 3);
  EXPECT_FALSE(config.model.moe.normalize);
  EXPECT_EQ(config.model.moe.score, "softmax");
  EXPECT_EQ(config.data.val, "");
  EXPECT_EQ(config.train.seq_len, 64);
}

RunConfig unusual_config() {
  return load(kMinimal, {"run.name=true", "run.seed=0", "data.val=\"\"", "train.lr.peak=0.1",
                         "train.lr.min=0.03333333333333333", "model.norm_eps=1e-300",
                         "model.rope_theta=123456.789", "model.moe.normalize=false",
                         "train.grad_clip=0", "data.train=\"path with: colon # and hash\""});
}

TEST(ConfigYaml, RoundTripReproducesTheConfig) {
  for (const RunConfig& original : {load(kMinimal), unusual_config()}) {
    const std::string yaml = config_to_yaml(original);
    const RunConfig reloaded = load_config_from_string(yaml, "round-trip.yaml");
    EXPECT_EQ(field_texts(reloaded), field_texts(original)) << yaml;
    // Identical below the first line, the comment that names the source.
    const std::string again = config_to_yaml(reloaded);
    EXPECT_EQ(again.substr(again.find('\n')), yaml.substr(yaml.find('\n')));
  }
  const RunConfig reloaded =
      load_config_from_string(config_to_yaml(unusual_config()), "round-trip.yaml");
  EXPECT_EQ(reloaded.run.name, "true");
  EXPECT_EQ(reloaded.train.lr.min, 0.03333333333333333);
  EXPECT_EQ(reloaded.model.norm_eps, 1e-300);
  EXPECT_EQ(reloaded.data.train, "path with: colon # and hash");
}

TEST(ConfigYaml, WritesEveryKeyInItsSection) {
  const std::string yaml = config_to_yaml(load(kMinimal));
  EXPECT_TRUE(contains(yaml, "model:\n  vocab_size: 257\n")) << yaml;
  EXPECT_TRUE(contains(yaml, "\n  moe:\n    routed_experts: 8\n")) << yaml;
  EXPECT_TRUE(contains(yaml, "\n  lr:\n    peak: 0.003\n")) << yaml;
  EXPECT_TRUE(contains(yaml, "log:\n  every: 10\n")) << yaml;
}

TEST(ConfigTable, ListsEveryKeyAlignedUnderAHeader) {
  std::ostringstream out;
  print_config_table(unusual_config(), out);
  std::istringstream lines(out.str());
  std::string header;
  std::getline(lines, header);
  EXPECT_EQ(header.rfind("key ", 0), 0u) << header;
  const size_t value_column = header.find("value");
  ASSERT_NE(value_column, std::string::npos);

  std::map<std::string, std::string> rows;
  for (std::string line; std::getline(lines, line);) {
    ASSERT_GT(line.size(), value_column) << line;
    EXPECT_NE(line[value_column], ' ') << line;
    EXPECT_EQ(line[value_column - 1], ' ') << line;
    rows[line.substr(0, line.find(' '))] = line.substr(value_column);
  }
  const std::map<std::string, std::string> expected = field_texts(unusual_config());
  EXPECT_EQ(rows.size(), expected.size());
  for (const auto& [path, text] : expected) {
    ASSERT_TRUE(rows.count(path)) << "missing " << path << "\n" << out.str();
    EXPECT_EQ(rows[path], text.empty() ? "\"\"" : text) << path;
  }
  EXPECT_EQ(rows["train.lr.peak"], "0.1");
  EXPECT_EQ(rows["model.moe.normalize"], "false");
}

TEST(ConfigFile, LoadsAFileAndNamesItInErrors) {
  const std::filesystem::path dir = BALEINE_TEST_TMP;
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "run.yaml").string();
  std::ofstream(path) << kMinimal << "train:\n  steps: 30\n";
  const RunConfig config = load_config(path, {"train.seq_len=16"});
  EXPECT_EQ(config.source, path);
  EXPECT_EQ(config.train.steps, 30);
  EXPECT_EQ(config.train.seq_len, 16);

  std::ofstream(path) << kMinimal << "train:\n  steps: 0\n";
  testing::expect_error(testing::user_error_of([&] { load_config(path); }), path + ":4",
                        "train.steps", "must be >= 1, got 0");
}

TEST(DidYouMean, EditDistanceCountsATranspositionOnce) {
  EXPECT_EQ(edit_distance("stpes", "steps"), 1);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(edit_distance("", "abc"), 3);
  EXPECT_EQ(edit_distance("same", "same"), 0);
}

TEST(DidYouMean, SuggestsOnlyPlausibleTypos) {
  const std::vector<std::string> keys = {"steps", "micro_batch", "global_batch", "lr",
                                         "warmup_steps"};
  EXPECT_EQ(closest_match("stpes", keys), "steps");
  EXPECT_EQ(closest_match("microbatch", keys), "micro_batch");
  EXPECT_EQ(closest_match("global_batches", keys), "global_batch");
  EXPECT_EQ(closest_match("rl", keys), "lr");
  EXPECT_EQ(closest_match("warmup", keys), "warmup_steps");
  EXPECT_EQ(closest_match("xyzzy", keys), "");
  EXPECT_EQ(closest_match("batch", keys), "");  // in two keys: a guess, so no hint
}

}  // namespace
}  // namespace baleine::config
