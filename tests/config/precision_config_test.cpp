// The precision section: compute (fp32 | bf16 | fp8), the AdamW moments' format, and the FP8
// recipe (format, tile, power-of-two scales, blocks kept in BF16). Defaults, YAML, --set, the
// table and the YAML round trip, and every refused value with its place, key and hint.
#include <sstream>
#include <string>
#include <vector>

#include "tests/config/config_test_support.h"

namespace baleine::config {
namespace {

using testing::contains;
using testing::expect_error;
using testing::kMinimal;
using testing::load;
using testing::load_error;
using testing::with;

using Blocks = std::vector<int64_t>;


// A whole precision section, one key per line: compute on line 4, optimizer_state on 5,
// format on 7, tile on 8, power_of_two_scales on 9, high_precision_blocks on 10.
std::string precision_yaml(const std::string& compute, const std::string& optimizer_state,
                           const std::string& format, const std::string& tile,
                           const std::string& power_of_two, const std::string& blocks) {
  return with("precision:\n  compute: " + compute + "\n  optimizer_state: " + optimizer_state +
              "\n  fp8:\n    format: " + format + "\n    tile: " + tile +
              "\n    power_of_two_scales: " + power_of_two +
              "\n    high_precision_blocks: " + blocks + "\n");
}

// The value column of `key`'s row in the start-of-run table.
std::string table_value(const RunConfig& config, const std::string& key) {
  std::ostringstream table;
  print_config_table(config, table);
  std::istringstream lines(table.str());
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(key + " ", 0) == 0) return line.substr(line.find_first_not_of(' ', key.size()));
  }
  ADD_FAILURE() << "no row for " << key << " in\n" << table.str();
  return "";
}

TEST(PrecisionConfig, DefaultsAreFp32WithDeepSeekV3sFp8Recipe) {
  const RunConfig config = load(kMinimal);
  EXPECT_EQ(config.precision.compute, "fp32");
  EXPECT_EQ(config.precision.optimizer_state, "fp32");
  EXPECT_EQ(config.precision.fp8.format, "e4m3");
  EXPECT_EQ(config.precision.fp8.tile, 128);
  EXPECT_FALSE(config.precision.fp8.power_of_two_scales);
  EXPECT_EQ(config.precision.fp8.high_precision_blocks, Blocks{});
  // No precision section in the file: a later error about these keys names the file.
  EXPECT_EQ(config.where("precision.fp8.tile"), "q.yaml");
}

TEST(PrecisionConfig, EveryKeyIsReadFromTheFileWithItsLine) {
  const RunConfig config = load(precision_yaml("fp8", "bf16", "hybrid", "64", "true", "[0, 3]"));
  EXPECT_EQ(config.precision.compute, "fp8");
  EXPECT_EQ(config.precision.optimizer_state, "bf16");
  EXPECT_EQ(config.precision.fp8.format, "hybrid");
  EXPECT_EQ(config.precision.fp8.tile, 64);
  EXPECT_TRUE(config.precision.fp8.power_of_two_scales);
  EXPECT_EQ(config.precision.fp8.high_precision_blocks, (Blocks{0, 3}));
  EXPECT_EQ(config.where("precision.compute"), "q.yaml:4");
  EXPECT_EQ(config.where("precision.optimizer_state"), "q.yaml:5");
  EXPECT_EQ(config.where("precision.fp8.format"), "q.yaml:7");
  EXPECT_EQ(config.where("precision.fp8.high_precision_blocks"), "q.yaml:10");
}

TEST(PrecisionConfig, EveryAllowedValueLoads) {
  for (const char* compute : {"fp32", "bf16", "fp8"}) {
    EXPECT_EQ(load(kMinimal, {std::string("precision.compute=") + compute}).precision.compute,
              compute);
  }
  for (const char* state : {"fp32", "bf16"}) {
    EXPECT_EQ(load(kMinimal, {std::string("precision.optimizer_state=") + state})
                  .precision.optimizer_state,
              state);
  }
  for (const char* format : {"e4m3", "e5m2", "hybrid"}) {
    EXPECT_EQ(load(kMinimal, {std::string("precision.fp8.format=") + format}).precision.fp8.format,
              format);
  }
  // The tile range's ends and a multiple of 16 that is not a power of two.
  for (const int64_t tile : {16, 48, 128, 1024}) {
    EXPECT_EQ(load(kMinimal, {"precision.fp8.tile=" + std::to_string(tile)}).precision.fp8.tile,
              tile);
  }
  // The first and the last of model.layers = 4 blocks, in any order; every block.
  EXPECT_EQ(load(kMinimal, {"precision.fp8.high_precision_blocks=[3, 0]"})
                .precision.fp8.high_precision_blocks,
            (Blocks{3, 0}));
  EXPECT_EQ(load(kMinimal, {"precision.fp8.high_precision_blocks=0,1,2,3"})
                .precision.fp8.high_precision_blocks,
            (Blocks{0, 1, 2, 3}));
}

TEST(PrecisionConfig, SetOverridesEachKeyAndNamesItself) {
  const std::string blocks = "precision.fp8.high_precision_blocks=0,3";
  const RunConfig config =
      load(precision_yaml("fp32", "fp32", "e4m3", "128", "false", "[1]"),
           {"precision.compute=fp8", "precision.optimizer_state=bf16", blocks,
            "precision.fp8.power_of_two_scales=true"});
  EXPECT_EQ(config.precision.compute, "fp8");
  EXPECT_EQ(config.precision.optimizer_state, "bf16");
  EXPECT_EQ(config.precision.fp8.high_precision_blocks, (Blocks{0, 3}));
  EXPECT_TRUE(config.precision.fp8.power_of_two_scales);
  EXPECT_EQ(config.precision.fp8.tile, 128);
  EXPECT_EQ(config.where("precision.fp8.high_precision_blocks"), "--set " + blocks);
  EXPECT_EQ(config.where("precision.fp8.tile"), "q.yaml:8");

  // A map VALUE sets its keys and keeps the section's others; `KEY=` clears the list.
  const RunConfig mapped = load(precision_yaml("fp8", "fp32", "e5m2", "128", "false", "[2]"),
                                {"precision.fp8={format: hybrid, tile: 256}",
                                 "precision.fp8.high_precision_blocks="});
  EXPECT_EQ(mapped.precision.fp8.format, "hybrid");
  EXPECT_EQ(mapped.precision.fp8.tile, 256);
  EXPECT_EQ(mapped.precision.compute, "fp8");
  EXPECT_EQ(mapped.precision.fp8.high_precision_blocks, Blocks{});
}

// The fp8 keys are used only with compute: fp8; with another compute they are still checked
// (a typo is reported at once) but accepted, so a config can keep its FP8 recipe while
// --set precision.compute=bf16 runs the baseline.
TEST(PrecisionConfig, Fp8KeysAreCheckedButAllowedWhenComputeIsNotFp8) {
  const std::string recipe = precision_yaml("fp8", "bf16", "e5m2", "64", "true", "[0]");
  const RunConfig baseline = load(recipe, {"precision.compute=bf16"});
  EXPECT_EQ(baseline.precision.compute, "bf16");
  EXPECT_EQ(baseline.precision.fp8.format, "e5m2");
  EXPECT_EQ(baseline.precision.fp8.tile, 64);
  expect_error(load_error(recipe, {"precision.compute=fp32", "precision.fp8.tile=100"}),
               "--set precision.fp8.tile=100", "precision.fp8.tile",
               "must be a multiple of 16 in [16, 1024], got 100");
}

TEST(PrecisionConfig, TableAndResolvedYamlRoundTrip) {
  const RunConfig original = load(kMinimal, {"precision.compute=fp8",
                                             "precision.optimizer_state=bf16",
                                             "precision.fp8.format=hybrid",
                                             "precision.fp8.tile=64",
                                             "precision.fp8.power_of_two_scales=true",
                                             "precision.fp8.high_precision_blocks=0,3"});
  EXPECT_EQ(table_value(original, "precision.compute"), "fp8");
  EXPECT_EQ(table_value(original, "precision.optimizer_state"), "bf16");
  EXPECT_EQ(table_value(original, "precision.fp8.format"), "hybrid");
  EXPECT_EQ(table_value(original, "precision.fp8.tile"), "64");
  EXPECT_EQ(table_value(original, "precision.fp8.power_of_two_scales"), "true");
  EXPECT_EQ(table_value(original, "precision.fp8.high_precision_blocks"), "[0, 3]");

  const std::string yaml = config_to_yaml(original);
  // One precision map with the fp8 map nested inside it, then the next section.
  EXPECT_TRUE(contains(yaml, "\nprecision:\n  compute: \"fp8\"\n  optimizer_state: \"bf16\"\n"
                             "  fp8:\n    format: \"hybrid\"\n    tile: 64\n"
                             "    power_of_two_scales: true\n"
                             "    high_precision_blocks: [0, 3]\ncost:\n"))
      << yaml;
  const RunConfig reloaded = load_config_from_string(yaml, "resolved.yaml");
  EXPECT_EQ(reloaded.precision.compute, original.precision.compute);
  EXPECT_EQ(reloaded.precision.optimizer_state, original.precision.optimizer_state);
  EXPECT_EQ(reloaded.precision.fp8.format, original.precision.fp8.format);
  EXPECT_EQ(reloaded.precision.fp8.tile, original.precision.fp8.tile);
  EXPECT_EQ(reloaded.precision.fp8.power_of_two_scales,
            original.precision.fp8.power_of_two_scales);
  EXPECT_EQ(reloaded.precision.fp8.high_precision_blocks,
            original.precision.fp8.high_precision_blocks);
  // The defaults round-trip too, the empty list as [].
  const std::string defaults = config_to_yaml(load(kMinimal));
  EXPECT_TRUE(contains(defaults, "\n    high_precision_blocks: []\n")) << defaults;
  EXPECT_EQ(load_config_from_string(defaults, "resolved.yaml").precision.fp8.tile, 128);
}

// --- refused values, from the file and from --set ----------------------------------------------

struct PrecisionCase {
  const char* key;       // under precision
  const char* value;     // as written in YAML and after --set KEY=
  const char* message;
  const char* hint;
};

const PrecisionCase kPrecisionCases[] = {
    {"compute", "fp16", "unknown value 'fp16'", "Choose one of: fp32, bf16, fp8"},
    {"compute", "bf61", "unknown value 'bf61'", "did you mean 'bf16'?"},
    {"optimizer_state", "fp8", "unknown value 'fp8'", "Choose one of: fp32, bf16"},
    {"fp8.format", "hybird", "unknown value 'hybird'",
     "did you mean 'hybrid'? Choose one of: e4m3, e5m2, hybrid"},
    {"fp8.format", "E4M3", "unknown value 'E4M3'", "Choose one of: e4m3, e5m2, hybrid"},
    {"fp8.tile", "100", "must be a multiple of 16 in [16, 1024], got 100: 100 % 16 = 4",
     "e.g. precision.fp8.tile: 128, DeepSeek-V3's 1x128 activation tiles"},
    {"fp8.tile", "8", "must be a multiple of 16 in [16, 1024], got 8", "tile: 128"},
    {"fp8.tile", "0", "got 0", "the only tile the GPU block-scaled GEMM supports"},
    {"fp8.tile", "-128", "got -128", ""},
    {"fp8.tile", "1040", "in [16, 1024], got 1040", ""},
    {"fp8.tile", "2048", "in [16, 1024], got 2048", ""},
    {"fp8.high_precision_blocks", "[0, 4]",
     "precision.fp8.high_precision_blocks [0, 4] names block 4, but the model has blocks 0 to 3 "
     "(model.layers = 4)",
     "blocks are numbered from 0: the last is model.layers - 1 = 3"},
    {"fp8.high_precision_blocks", "[-1]", "[-1] names block -1, but the model has blocks 0 to 3",
     ""},
    {"fp8.high_precision_blocks", "[3, 0, 3]",
     "precision.fp8.high_precision_blocks [3, 0, 3] lists block 3 more than once",
     "name each block once, e.g. precision.fp8.high_precision_blocks: [3, 0]"},
    // Block 0, the first index, must be caught as a repeat as well.
    {"fp8.high_precision_blocks", "[0, 1, 0, 1]", "lists block 0 more than once",
     "high_precision_blocks: [0, 1]"},
    // The type errors come from the reader, before the rules.
    {"fp8.tile", "1e2", "expected an integer, got '1e2'", "`tile: 100`"},
    {"fp8.power_of_two_scales", "yes", "expected true or false, got 'yes'", ""},
    {"fp8.high_precision_blocks", "[0, 1.5]", "expected a list of integers, got '1.5' as item 2",
     "whole numbers"},
    {"compute", "[fp8]", "expected a string, got a list", ""},
};

TEST(PrecisionConfigErrors, FromTheFileNameTheKeysLine) {
  for (const PrecisionCase& c : kPrecisionCases) {
    const std::string key = std::string("precision.") + c.key;
    SCOPED_TRACE(key + ": " + c.value);
    const bool in_fp8 = key.rfind("precision.fp8.", 0) == 0;
    const std::string yaml = in_fp8 ? "precision:\n  fp8:\n    " + key.substr(14) + ": " +
                                          c.value + "\n"
                                    : "precision:\n  " + key.substr(10) + ": " + c.value + "\n";
    expect_error(load_error(with(yaml)), in_fp8 ? "q.yaml:5" : "q.yaml:4", key, c.message,
                 c.hint);
  }
}

TEST(PrecisionConfigErrors, FromSetNameTheOverride) {
  for (const PrecisionCase& c : kPrecisionCases) {
    const std::string key = std::string("precision.") + c.key;
    const std::string argument = key + "=" + c.value;
    SCOPED_TRACE(argument);
    expect_error(load_error(kMinimal, {argument}), "--set " + argument, key, c.message, c.hint);
  }
  // The comma form a shell user types names the same blocks.
  expect_error(load_error(kMinimal, {"precision.fp8.high_precision_blocks=0,4"}),
               "--set precision.fp8.high_precision_blocks=0,4",
               "precision.fp8.high_precision_blocks",
               "[0, 4] names block 4, but the model has blocks 0 to 3");
}

TEST(PrecisionConfigErrors, FewerLayersStillPointAtTheBlockList) {
  // The list was right for 4 blocks; --set model.layers=3 makes block 3 vanish, and the list
  // (line 10) is what has to change with it.
  const std::string yaml = precision_yaml("fp8", "fp32", "e4m3", "128", "false", "[0, 3]");
  expect_error(load_error(yaml, {"model.layers=3"}), "q.yaml:10",
               "precision.fp8.high_precision_blocks",
               "[0, 3] names block 3, but the model has blocks 0 to 2 (model.layers = 3)",
               "the last is model.layers - 1 = 2");
}

TEST(PrecisionConfigErrors, UnknownOrMisplacedKeysGetDidYouMean) {
  expect_error(load_error(with("precision:\n  fp8:\n    tiles: 128\n")), "q.yaml:5",
               "precision.fp8.tiles", "unknown key", "did you mean 'precision.fp8.tile'?");
  expect_error(load_error(with("precision:\n  tile: 128\n")), "q.yaml:4", "precision.tile",
               "unknown key",
               "'tile' belongs in precision.fp8: did you mean 'precision.fp8.tile'?");
  expect_error(load_error(kMinimal, {"precision.optimiser_state=bf16"}),
               "--set precision.optimiser_state=bf16", "precision.optimiser_state",
               "unknown key", "did you mean 'precision.optimizer_state'?");
  expect_error(load_error(with("precision:\n  fp8: e4m3\n")), "q.yaml:4", "precision.fp8",
               "expected a section (a map of keys), got 'e4m3'",
               "format, tile, power_of_two_scales, high_precision_blocks");
}

}  // namespace
}  // namespace baleine::config
