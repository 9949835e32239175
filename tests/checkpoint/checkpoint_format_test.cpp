// manifest.json: every field survives manifest_to_json → parse_manifest exactly (random bit
// patterns of doubles, int64 near 2^62, a uint64 seed above 2^63, names full of quotes and
// control characters), and every kind of damage is refused with a UserError naming the file and
// the field, never a crash or another exception.
#include "trainer/checkpoint/checkpoint_format.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/checkpoint/checkpoint_test_support.h"
#include "tests/expect_user_error.h"

namespace baleine::ckpt {
namespace {

using baleine::testing::expect_user_error;
using testing::expect_same_manifest;
using testing::random_manifest;

const std::string kPath = "/runs/demo/checkpoints/step-000120/manifest.json";

// Two shards, a tensor split across them, and its first moment in bf16 after it in shard 0:
//   shard-00000.bin: wq param [0,12) at 0 (48 bytes), wq adam_m [0,24) at 48 (48 bytes)
//   shard-00001.bin: wq param [12,24) at 0 (48 bytes)
Manifest small_manifest() {
  Manifest m;
  m.baleine_version = "0.1.0";
  m.created = "2025-06-01T12:00:00Z";
  m.step = 120;
  m.tokens = 491520;
  m.next_batch = 121;
  m.seed = 1234;
  m.model_hash = "abc";
  m.precision = "bf16";
  m.optimizer_state = "f32";
  m.layout = {4, 2, 1, 2, "1f1b", true};
  m.ledger = {1, 2048, 12.5};
  m.guard.recent_losses = {2.5, 2.25};
  m.shards = {{"shard-00000.bin", 0, 96, 1}, {"shard-00001.bin", 1, 48, 2}};
  Record r;
  r.name = "wq";
  r.shape = {4, 6};
  r.begin = 0, r.end = 12, r.shard = 0, r.offset = 0;
  m.records.push_back(r);
  r.begin = 12, r.end = 24, r.shard = 1, r.offset = 0;
  m.records.push_back(r);
  r.kind = Kind::kAdamM, r.dtype = DType::kBF16;
  r.begin = 0, r.end = 24, r.shard = 0, r.offset = 48;
  m.records.push_back(r);
  return m;
}

// `text` with its only occurrence of `from` replaced (the test fails when it is not there once).
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in the manifest";
  EXPECT_EQ(text.find(from, at + 1), std::string::npos) << "'" << from << "' is there twice";
  if (at == std::string::npos) return text;
  return text.replace(at, from.size(), to);
}

TEST(CheckpointFormat, NamesAndSizes) {
  EXPECT_STREQ(dtype_name(DType::kF32), "f32");
  EXPECT_STREQ(dtype_name(DType::kBF16), "bf16");
  EXPECT_EQ(dtype_bytes(DType::kF32), 4);
  EXPECT_EQ(dtype_bytes(DType::kBF16), 2);
  EXPECT_STREQ(kind_name(Kind::kParam), "param");
  EXPECT_STREQ(kind_name(Kind::kAdamM), "adam_m");
  EXPECT_STREQ(kind_name(Kind::kAdamV), "adam_v");
  EXPECT_STREQ(kind_name(Kind::kExpertBias), "expert_bias");
}

TEST(CheckpointFormat, SmallManifestRoundTrips) {
  const Manifest m = small_manifest();
  const std::string text = manifest_to_json(m);
  expect_same_manifest(parse_manifest(text, kPath), m);
}

TEST(CheckpointFormat, RandomManifestsRoundTripExactly) {
  std::mt19937_64 rng(31337);
  for (int trial = 0; trial < 200; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Manifest m = random_manifest(rng);
    const std::string text = manifest_to_json(m);
    const Manifest back = parse_manifest(text, kPath);
    expect_same_manifest(back, m);
    EXPECT_EQ(manifest_to_json(back), text);  // and writing it again changes nothing
  }
}

TEST(CheckpointFormat, ExtremeIntegersRoundTrip) {
  Manifest m = small_manifest();
  m.step = std::numeric_limits<int64_t>::max();
  m.tokens = (int64_t{1} << 62) + 1;  // not representable as a double: must not pass through one
  m.seed = std::numeric_limits<uint64_t>::max();
  m.ledger.device_seconds = std::numeric_limits<double>::denorm_min();
  m.guard.recent_losses = {-0.0, std::numeric_limits<double>::max(), 0.1};
  expect_same_manifest(parse_manifest(manifest_to_json(m), kPath), m);
}

TEST(CheckpointFormat, NonFiniteNumbersAreNotWritten) {
  Manifest m = small_manifest();
  m.guard.recent_losses = {1.0, std::nan("")};
  EXPECT_THROW(manifest_to_json(m), std::invalid_argument);
  m.guard.recent_losses = {};
  m.ledger.device_seconds = std::numeric_limits<double>::infinity();
  EXPECT_THROW(manifest_to_json(m), std::invalid_argument);
}

struct TextCase {
  const char* what;
  std::string from, to;
  std::vector<std::string> parts;  // in the message, besides the path
};

TEST(CheckpointFormat, DamagedTextIsRefusedNamingTheField) {
  const std::string good = manifest_to_json(small_manifest());
  const std::vector<TextCase> cases = {
      {"missing field", ",\n  \"tokens\": 491520", "", {"tokens", "is missing"}},
      {"missing nested field", "\"ep\": 2, ", "", {"layout.ep", "is missing"}},
      {"string for integer",
       "\"step\": 120",
       "\"step\": \"120\"",
       {"step", "should be an integer", "the string \"120\""}},
      {"fraction for integer", "\"step\": 120", "\"step\": 120.5", {"step", "an integer"}},
      {"integer past int64",
       "\"step\": 120",
       "\"step\": 9223372036854775808",
       {"step", "an integer"}},
      {"negative seed", "\"seed\": 1234", "\"seed\": -1", {"seed", "an integer in [0, 2^64)"}},
      {"number for bool", "\"zero\": true", "\"zero\": 1", {"layout.zero", "true or false"}},
      {"number for string",
       "\"model_hash\": \"abc\"",
       "\"model_hash\": 7",
       {"model_hash", "should be a string"}},
      {"null for number",
       "\"device_seconds\": 12.5",
       "\"device_seconds\": null",
       {"ledger.device_seconds", "a finite number", "null"}},
      {"overflowing double",
       "\"device_seconds\": 12.5",
       "\"device_seconds\": 1e999",
       {"ledger.device_seconds", "a finite number"}},
      {"string in number array",
       "[2.5, 2.25]",
       "[2.5, \"x\"]",
       {"guard.recent_losses[1]", "a finite number"}},
      {"object for array",
       "\"records\": [",
       "\"records\": {\"a\": 1}, \"x\": [",
       {"records", "an array of objects"}},
      {"array for object", "\"layout\": {", "\"layout\": [1], \"y\": {", {"layout", "an object"}},
      {"scalar shape",
       "\"shape\": [4, 6], \"begin\": 12",
       "\"shape\": 24, \"begin\": 12",
       {"records[1].shape", "an array of integers"}},
      {"negative dimension",
       "\"shape\": [4, 6], \"begin\": 12",
       "\"shape\": [4, -6], \"begin\": 12",
       {"records[1].shape[1]", "below 0"}},
      {"negative shard size", "\"bytes\": 48", "\"bytes\": -48", {"shards[1].bytes", "outside"}},
      {"negative offset",
       "\"shard\": 0, \"offset\": 48",
       "\"shard\": 0, \"offset\": -4",
       {"records[2].offset", "outside"}},
      {"unknown dtype",
       "\"dtype\": \"bf16\"",
       "\"dtype\": \"f16\"",
       {"records[2].dtype", "unknown dtype \"f16\""}},
      {"unknown kind",
       "\"kind\": \"adam_m\"",
       "\"kind\": \"adam_x\"",
       {"records[2].kind", "unknown kind \"adam_x\""}},
      {"crc beyond 32 bits", "\"crc32c\": 2", "\"crc32c\": 4294967296", {"shards[1].crc32c"}},
      {"version 0", "\"version\": 1", "\"version\": 0", {"version", "outside"}},
      {"not an object", good, "[1, 2, 3]", {"is not a JSON object"}},
      {"not JSON", good, "{\"version\": 1, \"step\": [", {"is not valid JSON"}},
      {"empty file", good, "", {"is not a JSON object"}},
      {"binary garbage", good, std::string("\x00\xff\x13{[\"", 6), {"not"}},
  };
  for (const TextCase& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string bad = c.from == good ? c.to : replaced(good, c.from, c.to);
    std::vector<std::string> parts = c.parts;
    parts.push_back(kPath);
    expect_user_error([&] { parse_manifest(bad, kPath); }, parts);
  }
}

TEST(CheckpointFormat, NewerVersionAsksToUpgrade) {
  const std::string text = replaced(manifest_to_json(small_manifest()), "\"version\": 1",
                                    "\"version\": " + std::to_string(kFormatVersion + 1));
  expect_user_error(
      [&] { parse_manifest(text, kPath); },
      {kPath, "version", "format version " + std::to_string(kFormatVersion + 1),
       "reads format versions up to " + std::to_string(kFormatVersion), "upgrade baleine"});
  // The version is read first: a newer format's other fields do not matter.
  expect_user_error([&] { parse_manifest("{\"version\": 99}", kPath); }, {"upgrade baleine"});
}

struct StructCase {
  const char* what;
  std::function<void(Manifest&)> damage;
  std::vector<std::string> parts;
};

TEST(CheckpointFormat, InconsistentRecordsAreRefused) {
  const std::vector<StructCase> cases = {
      {"begin after end",
       [](Manifest& m) { m.records[1].begin = 20, m.records[1].end = 14; },
       {"records[1].begin", "20 is after end 14"}},
      {"end beyond the tensor",
       [](Manifest& m) { m.records[1].end = 25; },
       {"records[1].end", "25 is beyond the 24 elements of wq", "[4,6]"}},
      {"shard index out of range",
       [](Manifest& m) { m.records[1].shard = 2; },
       {"records[1].shard", "2 is not a shard (there are 2)"}},
      {"record past its shard's end",
       [](Manifest& m) { m.records[2].offset = 52; },
       {"records[2].offset", "bytes [52, 100)", "beyond the end of shard-00000.bin (96 bytes)"}},
      {"shard shorter than its records",
       [](Manifest& m) { m.shards[1].bytes = 47; },
       {"records[1].offset", "shard-00001.bin (47 bytes)"}},
      {"overlapping records",
       [](Manifest& m) { m.records[0].end = 13; },
       {"records[1]", "elements [12, 24) of wq (param) overlap [0, 13) in records[0]"}},
      {"same tensor, other shape",
       [](Manifest& m) {
         m.records[1].shape = {6, 4};
       },
       {"records[1].shape", "[6,4] differs from [4,6]"}},
      {"same tensor, other dtype",
       [](Manifest& m) {
         m.records[1].dtype = DType::kBF16;
         m.records[1].end = 18;
       },
       {"records[1].dtype", "bf16 differs from f32"}},
      {"too many elements",
       [](Manifest& m) {
         m.records[0].shape = {int64_t{1} << 40, int64_t{1} << 30};
       },
       {"records[0].shape", "too many elements"}},
      {"shard in another directory",
       [](Manifest& m) { m.shards[0].file = "../shard-00000.bin"; },
       {"shards[0].file", "not a plain file name"}},
      {"shard listed twice",
       [](Manifest& m) { m.shards[1].file = "shard-00000.bin"; },
       {"shards[1].file", "listed twice"}},
      {"empty name", [](Manifest& m) { m.records[0].name = ""; }, {"records[0].name", "empty"}},
  };
  for (const StructCase& c : cases) {
    SCOPED_TRACE(c.what);
    Manifest m = small_manifest();
    c.damage(m);
    std::vector<std::string> parts = c.parts;
    parts.push_back(kPath);
    expect_user_error([&] { parse_manifest(manifest_to_json(m), kPath); }, parts);
  }
}

TEST(CheckpointFormat, EmptyRangesOverlapNothing) {
  Manifest m = small_manifest();
  Record empty = m.records[0];
  empty.begin = empty.end = 5;  // inside records[0]'s range, but holding nothing
  m.records.push_back(empty);
  EXPECT_EQ(parse_manifest(manifest_to_json(m), kPath).records.size(), 4u);
}

// Truncations at every byte and random byte flips: each either parses or is a UserError;
// nothing else escapes (no crash, no yaml-cpp exception, no std::out_of_range).
TEST(CheckpointFormat, TruncatedOrFlippedTextNeverEscapesAsAnotherError) {
  const std::string good = manifest_to_json(small_manifest());
  const auto parse_or_refuse = [&](const std::string& text, const std::string& label) {
    try {
      parse_manifest(text, kPath);
    } catch (const UserError& error) {
      EXPECT_NE(std::string(error.what()).find(kPath), std::string::npos) << label;
    } catch (const std::exception& error) {
      ADD_FAILURE() << label << ": escaped as " << error.what();
    }
  };
  for (size_t cut = 0; cut < good.size(); cut += 3) {
    parse_or_refuse(good.substr(0, cut), "cut at " + std::to_string(cut));
  }
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text = good;
    const size_t at = rng() % text.size();
    text[at] = static_cast<char>(rng() % 256);
    parse_or_refuse(text, "byte " + std::to_string(at) + " set to " +
                              std::to_string(static_cast<unsigned char>(text[at])));
  }
}

}  // namespace
}  // namespace baleine::ckpt
