// Every kind of config error: each must be a baleine::UserError whose where, key, message and
// hint tell the user which line to change and how.
#include <string>
#include <vector>

#include "tests/config/config_test_support.h"

namespace baleine::config {
namespace {

using testing::expect_error;
using testing::kMinimal;
using testing::load_error;
using testing::with;
using testing::user_error_of;


// YAML that sets the dotted `key` to `value`, one section per line, so the key sits on line
// 2 + (number of names) of with(...).
std::string nested(const std::string& key, const std::string& value) {
  std::string yaml, indent;
  size_t start = 0;
  for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
    yaml += indent + key.substr(start, dot - start) + ":\n";
    indent += "  ";
    start = dot + 1;
  }
  return yaml + indent + key.substr(start) + ": " + value + "\n";
}

int line_of_nested(const std::string& key) {
  int names = 1;
  for (char c : key) names += c == '.';
  return 2 + names;
}

// --- the file itself ------------------------------------------------------------------------

TEST(ConfigFileErrors, MissingFileOrDirectoryNamesThePath) {
  expect_error(user_error_of([] { load_config("/nonexistent/q.yaml"); }), "/nonexistent/q.yaml",
               "", "cannot read the config file: No such file or directory", "check the path");
  expect_error(user_error_of([] { load_config("/tmp"); }), "/tmp", "", "is a directory");
}

TEST(ConfigFileErrors, MalformedYamlGivesLineAndColumn) {
  expect_error(load_error("data:\n  train: x\ntrain:\n  steps: [1, 2\n"), "q.yaml:5:1", "",
               "invalid YAML:", "check the indentation, brackets and quotes");
  // A tab before a key: yaml-cpp reports it at the ':' that follows.
  expect_error(load_error("data:\n\ttrain: x\n"), "q.yaml:2:7", "", "invalid YAML:", "YAML does not allow tabs");
}

TEST(ConfigFileErrors, EmptyFileOrNonMapTopLevel) {
  expect_error(load_error(""), "q.yaml", "", "the config is empty", "data: {train:");
  expect_error(load_error("# only a comment\n"), "q.yaml", "", "the config is empty");
  expect_error(load_error("- run\n- model\n"), "q.yaml:1", "",
               "the top level must be a map of sections, got a list", "run, model, data");
  expect_error(load_error("just text\n"), "q.yaml:1", "", "got 'just text'");
}

// --- keys -------------------------------------------------------------------------------------

TEST(ConfigKeyErrors, UnknownKeySuggestsTheClosestKnownKey) {
  const std::string yaml = with("train:\n  steps: 5\n  lr:\n    peak: 1e-3\n  stpes: 10\n");
  const UserError error = load_error(yaml);
  expect_error(error, "q.yaml:7", "train.stpes", "unknown key",
               "did you mean 'train.steps'? Known keys in train: steps, micro_batch, ");
  EXPECT_EQ(std::string(error.what()), "q.yaml:7: train.stpes: unknown key");
  expect_error(load_error(with(nested("train.lr.peek", "1"))), "q.yaml:5", "train.lr.peek",
               "unknown key", "did you mean 'train.lr.peak'? Known keys in train.lr: peak, min");
  expect_error(load_error(with(nested("model.moe.topk", "1"))), "q.yaml:5", "model.moe.topk",
               "unknown key", "did you mean 'model.moe.top_k'?");
}

TEST(ConfigKeyErrors, UnknownSectionAndMisplacedKeys) {
  expect_error(load_error(with("trian:\n  steps: 5\n")), "q.yaml:3", "trian", "unknown section",
               "did you mean 'train'? Known sections: run, model, data, train, parallel, "
               "precision, cost, ledger, checkpoint, guard, log; top-level keys: device");
  expect_error(load_error(with("train:\n  hidden: 64\n")), "q.yaml:4", "train.hidden",
               "unknown key", "'hidden' belongs in model: did you mean 'model.hidden'?");
  expect_error(load_error(with("steps: 5\n")), "q.yaml:3", "steps", "unknown section",
               "'steps' belongs in train: did you mean 'train.steps'?");
  expect_error(load_error(with("train:\n  warmup: 5\n")), "q.yaml:4", "train.warmup",
               "unknown key", "'warmup_steps' belongs in train.lr: did you mean "
               "'train.lr.warmup_steps'?");
  expect_error(load_error(with("model:\n  topk: 1\n")), "q.yaml:4", "model.topk",
               "unknown key", "did you mean 'model.moe.top_k'?");
}

TEST(ConfigKeyErrors, NoGuessForAFarOffKeyButTheKnownKeysAreListed) {
  const UserError error = load_error(with("parallel:\n  zzzzzz: 1\n"));
  expect_error(error, "q.yaml:4", "parallel.zzzzzz", "unknown key",
               "Known keys in parallel: pp, schedule, stage_layers, dp, ep");
  EXPECT_EQ(error.hint().find("did you mean"), std::string::npos) << error.hint();
}

TEST(ConfigKeyErrors, DuplicateKeyNamesTheSecondOccurrence) {
  expect_error(load_error(with("train:\n  steps: 5\n  steps: 6\n")), "q.yaml:5", "train.steps",
               "duplicate key", "delete one");
}

TEST(ConfigKeyErrors, SectionMustBeAMap) {
  expect_error(load_error(with("train: 5\n")), "q.yaml:3", "train",
               "expected a section (a map of keys), got '5'", "steps, micro_batch");
  expect_error(load_error(with("model:\n  moe: [1, 2]\n")), "q.yaml:4", "model.moe",
               "expected a section (a map of keys), got a list");
}

// --- types ------------------------------------------------------------------------------------

struct TypeCase {
  const char* key;
  const char* value;
  const char* message;
  const char* hint;
};

TEST(ConfigTypeErrors, EachTypeRejectsWhatIsNotIt) {
  const TypeCase cases[] = {
      {"train.steps", "12.5", "expected an integer, got '12.5'", "whole number"},
      {"train.steps", "abc", "expected an integer, got 'abc'", "the default: 100"},
      {"train.steps", "1e3", "expected an integer, got '1e3'", "`steps: 1000`"},
      {"train.steps", "\"12\"", "expected an integer, got the quoted string '12'",
       "remove the quotes"},
      {"train.steps", "", "expected an integer, got an empty value", "default (100)"},
      {"train.steps", "[1, 2]", "expected an integer, got a list", ""},
      {"train.steps", "{a: 1}", "expected an integer, got a map", ""},
      {"train.steps", "99999999999999999999", "out of range", "9223372036854775807"},
      {"run.seed", "-1", "expected a non-negative integer, got '-1'", "cannot be negative"},
      {"train.lr.peak", "fast", "expected a number, got 'fast'", "3e-4"},
      {"train.lr.peak", "inf", "expected a finite number, got 'inf'", ""},
      {"train.lr.peak", "'0.1'", "expected a number, got the quoted string '0.1'", ""},
      {"model.moe.normalize", "yes", "expected true or false, got 'yes'", "`true` and `false`"},
      {"model.moe.normalize", "1", "expected true or false, got '1'", ""},
      {"run.name", "{a: 1}", "expected a string, got a map", ""},
      {"run.name", "", "expected a string, got an empty value", "default ('baleine')"},
      {"parallel.stage_layers", "x", "expected a list of integers, got 'x'", "[2, 1, 1]"},
      {"parallel.stage_layers", "[1, y]", "expected a list of integers, got 'y' as item 2", ""},
  };
  for (const TypeCase& c : cases) {
    SCOPED_TRACE(std::string(c.key) + ": " + c.value);
    const std::string key = c.key;
    expect_error(load_error(with(nested(key, c.value))),
                 "q.yaml:" + std::to_string(line_of_nested(key)), key, c.message, c.hint);
  }
}

// --- ranges and enumerations, each from the file and from --set --------------------------------

struct RangeCase {
  const char* key;
  const char* value;
  const char* message;
  const char* hint;
};

const RangeCase kRangeCases[] = {
    {"run.name", "\"\"", "must not be empty", ""},
    {"model.vocab_size", "256", "must be >= 257, got 256", "256 for end-of-text"},
    {"model.hidden", "0", "must be >= 1, got 0", ""},
    {"model.layers", "0", "must be >= 1, got 0", ""},
    {"model.heads", "-2", "must be >= 1, got -2", ""},
    {"model.intermediate", "0", "must be >= 1", ""},
    {"model.dense_layers", "-1", "must be >= 0, got -1", ""},
    {"model.dense_layers", "5", "model.dense_layers (5) must be <= model.layers (4)",
     "model.dense_layers: 4"},
    {"model.rope_theta", "0", "must be > 0, got 0", ""},
    {"model.norm_eps", "-1e-6", "must be > 0, got -1e-6", ""},
    {"model.init_std", "0.0", "must be > 0, got 0", ""},
    {"model.moe.routed_experts", "-1", "must be >= 0, got -1", ""},
    {"model.moe.routed_experts", "0",
     "must be >= 1 for the 3 MoE layer(s) (model.layers - model.dense_layers = 4 - 1)",
     "model.dense_layers: 4"},
    {"model.moe.shared_experts", "-1", "must be >= 0", ""},
    {"model.moe.top_k", "0", "must be in [1, model.moe.routed_experts] = [1, 8], got 0", ""},
    {"model.moe.top_k", "9", "= [1, 8], got 9", ""},
    {"model.moe.intermediate", "0", "must be >= 1", ""},
    {"model.moe.score", "softmx", "unknown value 'softmx'",
     "did you mean 'softmax'? Choose one of: sigmoid, softmax"},
    {"model.moe.route_scale", "0", "must be > 0", ""},
    {"model.moe.bias_update_speed", "-0.001", "must be >= 0, got -0.001", ""},
    {"model.moe.seq_aux_alpha", "-1", "must be >= 0", ""},
    {"train.steps", "0", "must be >= 1, got 0", ""},
    {"train.micro_batch", "0", "must be >= 1", ""},
    {"train.global_batch", "0", "must be >= 1", ""},
    {"train.seq_len", "0", "must be >= 1", ""},
    {"train.grad_clip", "-1", "must be >= 0, got -1", ""},
    {"train.eval_every", "-1", "must be >= 0", "only at the end"},
    {"train.eval_batches", "0", "must be >= 1", ""},
    {"train.lr.peak", "0", "must be > 0, got 0", ""},
    {"train.lr.min", "-1e-4", "must be >= 0, got -1e-4", ""},
    {"train.lr.min", "0.01", "train.lr.min (0.01) must be <= train.lr.peak (0.003)", ""},
    {"train.lr.warmup_steps", "-1", "must be >= 0", ""},
    {"train.lr.warmup_steps", "101", "train.lr.warmup_steps (101) must be <= train.steps (100)",
     ""},
    {"train.lr.schedule", "linear", "unknown value 'linear'", "Choose one of: cosine, constant"},
    {"train.adamw.beta1", "1", "must be in [0, 1), got 1", ""},
    {"train.adamw.beta2", "-0.1", "must be in [0, 1), got -0.1", ""},
    {"train.adamw.eps", "0", "must be > 0", ""},
    {"train.adamw.weight_decay", "-0.1", "must be >= 0", ""},
    {"parallel.pp", "0", "must be >= 1, got 0", ""},
    {"parallel.schedule", "dualpip", "unknown value 'dualpip'",
     "did you mean 'dualpipe'? Choose one of: 1f1b, dualpipe, dualpipev"},
    {"parallel.dp", "0", "must be >= 1, got 0", ""},
    {"parallel.ep", "0", "must be >= 1, got 0", ""},
    {"parallel.ep", "3", "parallel.ep (3) must divide parallel.dp (1): 1 % 3 = 1", ""},
    {"parallel.zero", "2", "must be 0 or 1, got 2", "stages 2 and 3 are not implemented"},
    {"parallel.bucket_mb", "0", "must be > 0", ""},
    {"parallel.timeout_s", "-1", "must be > 0", ""},
    {"parallel.ranks_per_node", "-1", "must be >= 0", ""},
    {"parallel.stage_layers", "[3, 1]", "parallel.stage_layers [3, 1] has 2 entries, but 1f1b "
     "on 1 rank(s) has 1 pipeline stage(s)", "parallel.stage_layers: [4]"},
    {"parallel.stage_layers", "[3]", "[3] sums to 3 but model.layers is 4", ""},
    {"model.moe.expert_groups", "0", "must be >= 1, got 0", ""},
    {"model.moe.expert_groups", "3", "model.moe.routed_experts (8) must split into "
     "model.moe.expert_groups (3) equal groups: 8 % 3 = 2", ""},
    {"model.moe.max_groups_per_token", "2", "must be in [0, model.moe.expert_groups] = [0, 1], "
     "got 2", ""},
    {"precision.compute", "fp16", "unknown value 'fp16'", "Choose one of: fp32, bf16, fp8"},
    {"log.every", "0", "must be >= 1, got 0", ""},
};

TEST(ConfigRangeErrors, FromTheFileNameTheKeysLine) {
  for (const RangeCase& c : kRangeCases) {
    SCOPED_TRACE(std::string(c.key) + ": " + c.value);
    const std::string key = c.key;
    expect_error(load_error(with(nested(key, c.value))),
                 "q.yaml:" + std::to_string(line_of_nested(key)), key, c.message, c.hint);
  }
}

TEST(ConfigRangeErrors, FromSetNameTheOverride) {
  for (const RangeCase& c : kRangeCases) {
    const std::string argument = std::string(c.key) + "=" + c.value;
    SCOPED_TRACE(argument);
    expect_error(load_error(kMinimal, {argument}), "--set " + argument, c.key, c.message, c.hint);
  }
}

// --- cross-field rules ------------------------------------------------------------------------

TEST(ConfigCrossFieldErrors, HiddenMustSplitIntoEvenHeads) {
  expect_error(load_error(with("model:\n  hidden: 130\n  heads: 4\n")), "q.yaml:4",
               "model.hidden", "model.hidden (130) must be divisible by model.heads (4): "
               "130 % 4 = 2", "e.g. model.hidden: 128 or 136");
  expect_error(load_error(with("model:\n  hidden: 132\n  heads: 4\n")), "q.yaml:5",
               "model.heads", "model.hidden / model.heads = 132 / 4 = 33 is odd; RoPE");
  // Only hidden was written, so that is the line to change.
  expect_error(load_error(with("model:\n  hidden: 132\n")), "q.yaml:4", "model.hidden",
               "= 132 / 4 = 33 is odd");
}

TEST(ConfigCrossFieldErrors, ParallelLayoutShowsTheArithmetic) {
  expect_error(load_error(with("parallel:\n  dp: 4\n  ep: 3\n")), "q.yaml:5", "parallel.ep",
               "parallel.ep (3) must divide parallel.dp (4): 4 % 3 = 1");
  expect_error(load_error(with("model:\n  moe:\n    routed_experts: 6\nparallel:\n  dp: 4\n"
                               "  ep: 4\ntrain:\n  global_batch: 32\n")),
               "q.yaml:8", "parallel.ep",
               "model.moe.routed_experts (6) must be divisible by parallel.ep (4): 6 % 4 = 2");
  expect_error(load_error(with("model:\n  moe:\n    expert_groups: 4\n"
                               "    max_groups_per_token: 1\n    top_k: 3\n")),
               "q.yaml:6", "model.moe.max_groups_per_token",
               "model.moe.top_k (3) exceeds the experts a token can reach: max_groups_per_token "
               "x experts per group = 1 x 2 = 2");
}

TEST(ConfigCrossFieldErrors, PipelineShapeShowsTheArithmetic) {
  expect_error(load_error(with("parallel:\n  pp: 3\n  schedule: dualpipe\n")), "q.yaml:4",
               "parallel.pp", "DualPipe needs an even number of pipeline ranks, got 3");
  // Default batch: global 8, micro 8 -> 1 micro-batch.
  expect_error(load_error(with("parallel:\n  pp: 2\n  schedule: dualpipev\n")), "q.yaml:4",
               "parallel.pp", "dualpipev needs at least 2 x parallel.pp = 4 micro-batches per "
               "step, got global_batch / (micro_batch x dp) = 8 / (8 x 1) = 1");
  expect_error(load_error(with("model:\n  layers: 3\nparallel:\n  pp: 4\n")), "q.yaml:4",
               "model.layers", "model.layers (3) must be >= the 4 pipeline stages of 1f1b on 4 "
               "ranks");
}

TEST(ConfigCrossFieldErrors, GlobalBatchMustBeWholeMicroBatches) {
  expect_error(load_error(with("train:\n  micro_batch: 8\n  global_batch: 12\n")), "q.yaml:5",
               "train.global_batch",
               "train.global_batch (12) must be a multiple of train.micro_batch * parallel.dp "
               "= 8 * 1 = 8: 12 % 8 = 4",
               "e.g. train.global_batch: 8 or 16");
  expect_error(load_error(with("train:\n  micro_batch: 3\n")), "q.yaml:4", "train.micro_batch",
               "= 3 * 1 = 3: 8 % 3 = 2");
}

TEST(ConfigCrossFieldErrors, AbsentKeyPointsAtItsSectionOrTheFile) {
  // warmup_steps keeps its default 20, which steps: 10 breaks; train: is on line 3.
  expect_error(load_error(with("train:\n  steps: 10\n")), "q.yaml:3", "train.lr.warmup_steps",
               "train.lr.warmup_steps (20) must be <= train.steps (10)");
  expect_error(load_error("train:\n  steps: 10\n"), "q.yaml", "data.train",
               "no training data: data.train is empty",
               "run `baleine data prepare ...` and set data.train to its output");
  expect_error(load_error("run:\n  name: x\ndata:\n  val: v.bin\n"), "q.yaml:3", "data.train",
               "data.train is empty", "baleine data prepare");
  expect_error(load_error("data:\n  train: \"\"\n"), "q.yaml:2", "data.train",
               "data.train is empty");
}

// --- --set ------------------------------------------------------------------------------------

TEST(ConfigOverrideErrors, BadValueNamesTheOverride) {
  const UserError error = load_error(kMinimal, {"train.steps=abc"});
  expect_error(error, "--set train.steps=abc", "train.steps", "expected an integer, got 'abc'");
  EXPECT_EQ(std::string(error.what()),
            "--set train.steps=abc: train.steps: expected an integer, got 'abc'");
  expect_error(load_error(kMinimal, {"model.moe={top_k: x}"}), "--set model.moe={top_k: x}",
               "model.moe.top_k", "expected an integer, got 'x'");
  expect_error(load_error(kMinimal, {"model.hidden=130"}), "--set model.hidden=130",
               "model.hidden", "130 % 4 = 2");
  expect_error(load_error(kMinimal, {"train.steps=[1,"}), "--set train.steps=[1,", "train.steps",
               "VALUE is not valid YAML");
}

TEST(ConfigOverrideErrors, UnknownKeysGetDidYouMean) {
  expect_error(load_error(kMinimal, {"train.stpes=5"}), "--set train.stpes=5", "train.stpes",
               "unknown key", "did you mean 'train.steps'?");
  expect_error(load_error(kMinimal, {"modle.hidden=64"}), "--set modle.hidden=64", "modle",
               "unknown section", "did you mean 'model'?");
  expect_error(load_error(kMinimal, {"model.moe={topk: 1}"}), "--set model.moe={topk: 1}",
               "model.moe.topk", "unknown key", "did you mean 'model.moe.top_k'?");
}

TEST(ConfigOverrideErrors, MalformedArguments) {
  expect_error(load_error(kMinimal, {"train.steps"}), "--set train.steps", "",
               "an override must look like key.path=VALUE", "--set train.steps=200");
  expect_error(load_error(kMinimal, {"=5"}), "--set =5", "", "the key before '=' is empty");
  expect_error(load_error(kMinimal, {"train..steps=5"}), "--set train..steps=5", "train..steps",
               "the key path has an empty name");
  expect_error(load_error(kMinimal, {".steps=5"}), "--set .steps=5", ".steps",
               "the key path has an empty name");
}

}  // namespace
}  // namespace baleine::config
