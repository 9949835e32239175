// The config's list-valued keys (today parallel.stage_layers, a list of integers): both YAML
// spellings, --set, the table, the YAML round trip, type errors and the stage-count rules.
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

using Counts = std::vector<int64_t>;


// Three pipeline ranks (1F1B: three stages) over the default four blocks, and `list` on line 5.
std::string three_stages(const std::string& list) {
  return with("parallel:\n  pp: 3\n  stage_layers: " + list + "\n");
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

TEST(ListKeys, DefaultIsEmptyMeaningTheEvenSplit) {
  EXPECT_EQ(load(kMinimal).parallel.stage_layers, Counts{});
  EXPECT_EQ(load(three_stages("[]")).parallel.stage_layers, Counts{});
}

TEST(ListKeys, FlowAndBlockSequencesReadTheSame) {
  EXPECT_EQ(load(three_stages("[2, 1, 1]")).parallel.stage_layers, (Counts{2, 1, 1}));
  EXPECT_EQ(load(three_stages("[1,+2,1]")).parallel.stage_layers, (Counts{1, 2, 1}));
  const RunConfig block =
      load(with("parallel:\n  pp: 3\n  stage_layers:\n    - 1\n    - 1\n    - 2\n"));
  EXPECT_EQ(block.parallel.stage_layers, (Counts{1, 1, 2}));
  EXPECT_EQ(block.where("parallel.stage_layers"), "q.yaml:5");
}

TEST(ListKeys, SetTakesAYamlListOrCommaSeparatedIntegers) {
  const std::string pp3 = "parallel.pp=3";
  EXPECT_EQ(load(kMinimal, {pp3, "parallel.stage_layers=[2,1,1]"}).parallel.stage_layers,
            (Counts{2, 1, 1}));
  EXPECT_EQ(load(kMinimal, {pp3, "parallel.stage_layers=1,2,1"}).parallel.stage_layers,
            (Counts{1, 2, 1}));
  EXPECT_EQ(load(kMinimal, {pp3, "parallel.stage_layers= 1, 1 ,2"}).parallel.stage_layers,
            (Counts{1, 1, 2}));
  EXPECT_EQ(load(kMinimal, {"parallel={pp: 3, stage_layers: [2, 1, 1]}"}).parallel.stage_layers,
            (Counts{2, 1, 1}));
  // One stage: a single integer is the one-item list.
  EXPECT_EQ(load(kMinimal, {"parallel.stage_layers=4"}).parallel.stage_layers, (Counts{4}));
  // `KEY=` and `KEY=[]` clear a list the file set, as `data.val=` clears a string.
  EXPECT_EQ(load(three_stages("[2, 1, 1]"), {"parallel.stage_layers="}).parallel.stage_layers,
            Counts{});
  EXPECT_EQ(load(three_stages("[2, 1, 1]"), {"parallel.stage_layers=[]"}).parallel.stage_layers,
            Counts{});
  const RunConfig replaced = load(three_stages("[2, 1, 1]"), {"parallel.stage_layers=1,1,2"});
  EXPECT_EQ(replaced.parallel.stage_layers, (Counts{1, 1, 2}));
  EXPECT_EQ(replaced.where("parallel.stage_layers"), "--set parallel.stage_layers=1,1,2");
}

TEST(ListKeys, TableAndResolvedYamlWriteFlowLists) {
  const RunConfig uneven = load(kMinimal, {"parallel.pp=3", "parallel.stage_layers=2,1,1"});
  EXPECT_EQ(table_value(uneven, "parallel.stage_layers"), "[2, 1, 1]");
  EXPECT_EQ(table_value(load(kMinimal), "parallel.stage_layers"), "[]");

  const std::string yaml = config_to_yaml(uneven);
  EXPECT_TRUE(contains(yaml, "\n  stage_layers: [2, 1, 1]\n")) << yaml;
  EXPECT_TRUE(contains(config_to_yaml(load(kMinimal)), "\n  stage_layers: []\n"));
  for (const RunConfig& original : {load(kMinimal), uneven}) {
    const RunConfig reloaded = load_config_from_string(config_to_yaml(original), "resolved.yaml");
    EXPECT_EQ(reloaded.parallel.stage_layers, original.parallel.stage_layers);
  }
}

struct ListCase {
  const char* value;
  const char* message;
  const char* hint;
};

TEST(ListKeyErrors, TypeErrorsNameTheItemAndTheLine) {
  const ListCase cases[] = {
      {"abc", "expected a list of integers, got 'abc'", "`stage_layers: [2, 1, 1]`"},
      {"[2, x, 1]", "expected a list of integers, got 'x' as item 2", "items are whole numbers"},
      {"[2, 1.5, 1]", "got '1.5' as item 2", "whole numbers"},
      {"[2, 1e0, 1]", "got '1e0' as item 2", "write it as 1"},
      {"[2, \"1\", 1]", "got the quoted string '1' as item 2", "remove the quotes"},
      {"[2, [1], 1]", "got a list as item 2", "a list of lists"},
      {"[2, {a: 1}, 1]", "got a map (a section of keys) as item 2", ""},
      {"[1, 1, 99999999999999999999]", "got '99999999999999999999' as item 3: out of range",
       "9223372036854775807"},
      {"", "expected a list of integers, got an empty value", "write `[]` for an empty list"},
      {"{a: 1}", "expected a list of integers, got a map", "[2, 1, 1]"},
      {"\"2,1,1\"", "expected a list of integers, got the quoted string '2,1,1'",
       "remove the quotes"},
      {"2,x,1", "got 'x' as item 2 of '2,x,1'", "whole numbers"},
      {"2 1 1", "expected a list of integers, got '2 1 1'", ""},
  };
  for (const ListCase& c : cases) {
    SCOPED_TRACE(c.value);
    expect_error(load_error(three_stages(c.value)), "q.yaml:5", "parallel.stage_layers",
                 c.message, c.hint);
  }
  // An empty item of a block list: the key's line, the item's number.
  expect_error(load_error(with("parallel:\n  pp: 3\n  stage_layers:\n    - 2\n    -\n    - 1\n")),
               "q.yaml:5", "parallel.stage_layers",
               "expected a list of integers, got an empty value as item 2", "give every item");
  // From --set: the argument is the place to fix.
  expect_error(load_error(kMinimal, {"parallel.stage_layers=[2,x]"}),
               "--set parallel.stage_layers=[2,x]", "parallel.stage_layers",
               "got 'x' as item 2");
  // A scalar key still refuses a list.
  expect_error(load_error(with("parallel:\n  pp: [2, 1]\n")), "q.yaml:4", "parallel.pp",
               "expected an integer, got a list");
}

TEST(ListKeyErrors, StageCountsMustMatchTheStages) {
  expect_error(load_error(with("parallel:\n  pp: 2\n  stage_layers: [4]\n")), "q.yaml:5",
               "parallel.stage_layers",
               "parallel.stage_layers [4] has 1 entry, but 1f1b on 2 rank(s) has 2 pipeline "
               "stage(s)",
               "give one block count per stage; e.g. parallel.stage_layers: [2, 2] (the even "
               "split, which [] also gives)");
  expect_error(load_error(with("parallel:\n  stage_layers: [2, 2]\n")), "q.yaml:4",
               "parallel.stage_layers", "[2, 2] has 2 entries, but 1f1b on 1 rank(s) has 1",
               "parallel.stage_layers: [4]");
  // DualPipeV: 2 x pp stages (enough micro-batches: 8 / (2 x 1) = 4 >= 2 x pp).
  expect_error(load_error(with("train:\n  micro_batch: 2\nparallel:\n  pp: 2\n"
                               "  schedule: dualpipev\n  stage_layers: [2, 2]\n")),
               "q.yaml:8", "parallel.stage_layers",
               "dualpipev on 2 rank(s) has 4 pipeline stage(s) (2 x parallel.pp",
               "[1, 1, 1, 1]");
  expect_error(load_error(with("train:\n  micro_batch: 2\nparallel:\n  pp: 2\n"
                               "  schedule: dualpipe\n  stage_layers: [4]\n")),
               "q.yaml:8", "parallel.stage_layers",
               "dualpipe on 2 rank(s) has 2 pipeline stage(s) in each direction");
}

TEST(ListKeyErrors, EveryStageNeedsABlockAndEveryBlockAStage) {
  expect_error(load_error(with("parallel:\n  pp: 2\n  stage_layers: [4, 0]\n")), "q.yaml:5",
               "parallel.stage_layers",
               "parallel.stage_layers [4, 0] gives stage 1 0 blocks; every stage needs at least "
               "one transformer block",
               "[2, 2]");
  expect_error(load_error(with("parallel:\n  pp: 2\n  stage_layers: [2, 1]\n")), "q.yaml:5",
               "parallel.stage_layers",
               "parallel.stage_layers [2, 1] sums to 3 but model.layers is 4: 2 + 1 = 3",
               "every block must sit on exactly one stage; e.g. parallel.stage_layers: [2, 2]");
  expect_error(load_error(with("model:\n  layers: 6\nparallel:\n  pp: 3\n"
                               "  stage_layers: [3, 3, 3]\n")),
               "q.yaml:7", "parallel.stage_layers",
               "[3, 3, 3] sums to 9 but model.layers is 6: 3 + 3 + 3 = 9");
  expect_error(load_error(kMinimal, {"parallel.pp=2",
                                     "parallel.stage_layers=[9223372036854775807,1]"}),
               "--set parallel.stage_layers=[9223372036854775807,1]", "parallel.stage_layers",
               "sums to more than 9223372036854775807 but model.layers is 4");
  // Changing model.layers without the list: the list is still the key to fix.
  expect_error(load_error(three_stages("[2, 1, 1]"), {"model.layers=5"}), "q.yaml:5",
               "parallel.stage_layers", "[2, 1, 1] sums to 4 but model.layers is 5");
}

}  // namespace
}  // namespace baleine::config
