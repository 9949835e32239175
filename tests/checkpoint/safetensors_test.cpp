// The safetensors writer and parser. Written files are checked twice: with parse_safetensors and
// with an independent minimal reading in this file that follows the format's text
// (https://huggingface.co/docs/safetensors, "Format"): u64 header length, JSON header read with
// yaml-cpp, offsets relative to the buffer, raw little-endian bytes. Bytes are compared exactly:
// the writer copies floats, so any difference is a bug (no tolerance).
#include "trainer/checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/expect_user_error.h"
#include "tests/scratch_dir.h"

namespace baleine::ckpt {
namespace {

namespace fs = std::filesystem;
using baleine::testing::expect_user_error;
using baleine::testing::scratch_dir;

struct TestTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

std::vector<TestTensor> random_tensors(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Declared out of name order, with a scalar, a zero-size tensor and names that need escaping,
  // so ordering, empty shapes and JSON strings are all exercised.
  std::vector<TestTensor> tensors = {{"embedding", {17, 3}, {}},
                                     {"blocks.1.attention.wq", {8, 5}, {}},
                                     {"blocks.0.moe.experts.2.w1", {4, 6}, {}},
                                     {"blocks.10.norm1.gain", {7}, {}},
                                     {"scale", {}, {}},
                                     {"empty", {0, 4}, {}},
                                     {"odd \"name\" \\ here", {3}, {}}};
  for (TestTensor& t : tensors) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    t.values.resize(static_cast<size_t>(n));
    for (float& v : t.values) v = normal(rng);
  }
  return tensors;
}

std::vector<SafetensorsSource> sources_of(const std::vector<TestTensor>& tensors) {
  std::vector<SafetensorsSource> sources;
  for (const TestTensor& t : tensors) {
    sources.push_back({t.name, t.shape, [&t](float* dst) {
                         std::copy(t.values.begin(), t.values.end(), dst);
                       }});
  }
  return sources;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int b = 0; b < 8; ++b) s[b] = static_cast<char>((n >> (8 * b)) & 0xff);
  return s;
}

// A file with this header (unpadded) and `buffer_bytes` bytes of buffer.
std::string make_file(const std::string& dir, const std::string& header, size_t buffer_bytes) {
  const std::string path = dir + "/crafted.safetensors";
  write_file(path, u64_le(header.size()) + header + std::string(buffer_bytes, '\x5a'));
  return path;
}

const std::map<std::string, std::string> kMetadata = {
    {"step", "120"}, {"model_hash", "abc123"}, {"note", "line one\nline \"two\""}};

TEST(Safetensors, MatchesAnIndependentReadingOfTheFormat) {
  const std::string dir = scratch_dir();
  const auto tensors = random_tensors(11);
  const std::string path = dir + "/model.safetensors";
  const SafetensorsWriteSummary summary = write_safetensors(path, sources_of(tensors), kMetadata);

  const std::string file = read_file(path);
  ASSERT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | static_cast<unsigned char>(file[b]);
  ASSERT_LE(8 + n, file.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "the buffer must start 8-byte aligned";
  EXPECT_EQ(static_cast<int64_t>(n), summary.header_bytes);
  EXPECT_EQ(static_cast<int64_t>(file.size()), summary.file_bytes);

  const std::string header = file.substr(8, n);
  ASSERT_EQ(header.front(), '{');
  const size_t close = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << "padding is spaces";

  const YAML::Node root = YAML::Load(header);
  ASSERT_TRUE(root.IsMap());
  EXPECT_EQ(root.size(), tensors.size() + 1);
  for (const auto& [key, value] : kMetadata) {
    EXPECT_EQ(root["__metadata__"][key].as<std::string>(), value) << key;
  }
  const std::string buffer = file.substr(8 + n);
  int64_t elements = 0;
  for (const TestTensor& t : tensors) {
    const YAML::Node entry = root[t.name];
    ASSERT_TRUE(entry.IsMap()) << t.name;
    EXPECT_EQ(entry["dtype"].as<std::string>(), "F32");
    EXPECT_EQ(entry["shape"].as<std::vector<int64_t>>(), t.shape) << t.name;
    const auto offsets = entry["data_offsets"].as<std::vector<uint64_t>>();
    ASSERT_EQ(offsets.size(), 2u);
    ASSERT_EQ(offsets[1] - offsets[0], t.values.size() * 4) << t.name;
    ASSERT_LE(offsets[1], buffer.size()) << t.name;
    EXPECT_EQ(std::memcmp(buffer.data() + offsets[0], t.values.data(), offsets[1] - offsets[0]), 0)
        << t.name;
    elements += static_cast<int64_t>(t.values.size());
  }
  EXPECT_EQ(buffer.size(), static_cast<size_t>(elements) * 4) << "no gaps, no trailing bytes";
  EXPECT_EQ(summary.elements, elements);
  EXPECT_EQ(summary.tensors, static_cast<int64_t>(tensors.size()));
}

TEST(Safetensors, KeysAreSortedAndTheDataFollowsTheirOrder) {
  const std::string dir = scratch_dir();
  const auto tensors = random_tensors(12);
  const std::string path = dir + "/model.safetensors";
  write_safetensors(path, sources_of(tensors), kMetadata);
  const std::string file = read_file(path);
  uint64_t n = 0;
  for (int b = 7; b >= 0; --b) n = (n << 8) | static_cast<unsigned char>(file[b]);
  const std::string header = file.substr(8, n);

  // The order keys appear in the text (yaml-cpp keeps a map's document order).
  std::vector<std::string> keys;
  std::vector<uint64_t> begins;
  for (const auto& item : YAML::Load(header)) {
    keys.push_back(item.first.as<std::string>());
    if (keys.back() != "__metadata__") begins.push_back(item.second["data_offsets"][0].as<uint64_t>());
  }
  ASSERT_EQ(keys.front(), "__metadata__");
  std::vector<std::string> names(keys.begin() + 1, keys.end());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_TRUE(std::is_sorted(begins.begin(), begins.end())) << "data laid out in key order";
  // Byte order, not numeric: '.' (0x2e) sorts before '0' (0x30), so "blocks.1.attention.wq"
  // comes before "blocks.10.norm1.gain". Pinned so that a change of comparison is noticed.
  const auto pos = [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) - names.begin();
  };
  EXPECT_LT(pos("blocks.1.attention.wq"), pos("blocks.10.norm1.gain"));
}

TEST(Safetensors, ExactBytesOfATinyFile) {
  // Built by hand from the format's description: nothing shared with the writer's code.
  const std::string dir = scratch_dir();
  const std::vector<float> b = {1.0f, -2.0f};
  const std::vector<float> a = {0.5f};
  const std::string path = dir + "/tiny.safetensors";
  write_safetensors(path,
                    {{"b", {2}, [&](float* dst) { std::copy(b.begin(), b.end(), dst); }},
                     {"a", {1, 1}, [&](float* dst) { std::copy(a.begin(), a.end(), dst); }}},
                    {{"k", "v"}});
  std::string header =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  // IEEE 754 binary32, little-endian: 0.5 = 0x3f000000, 1.0 = 0x3f800000, -2.0 = 0xc0000000.
  const std::string data("\x00\x00\x00\x3f" "\x00\x00\x80\x3f" "\x00\x00\x00\xc0", 12);
  EXPECT_EQ(read_file(path), u64_le(header.size()) + header + data);
}

TEST(Safetensors, ParserReadsBackWhatWasWritten) {
  const std::string dir = scratch_dir();
  const auto tensors = random_tensors(13);
  const std::string path = dir + "/model.safetensors";
  write_safetensors(path, sources_of(tensors), kMetadata);
  const SafetensorsHeader parsed = parse_safetensors(path);
  EXPECT_EQ(parsed.metadata, kMetadata);
  ASSERT_EQ(parsed.tensors.size(), tensors.size());
  EXPECT_EQ(parsed.data_start % 8, 0);
  for (size_t i = 1; i < parsed.tensors.size(); ++i) {
    EXPECT_LT(parsed.tensors[i - 1].name, parsed.tensors[i].name);
  }
  for (const TestTensor& t : tensors) {
    const auto it = std::find_if(parsed.tensors.begin(), parsed.tensors.end(),
                                 [&](const SafetensorsEntry& e) { return e.name == t.name; });
    ASSERT_NE(it, parsed.tensors.end()) << t.name;
    EXPECT_EQ(it->dtype, "F32");
    EXPECT_EQ(it->shape, t.shape);
    const std::vector<char> bytes = read_safetensors_bytes(path, parsed, *it);
    ASSERT_EQ(bytes.size(), t.values.size() * 4);
    EXPECT_EQ(std::memcmp(bytes.data(), t.values.data(), bytes.size()), 0) << t.name;
  }
}

TEST(Safetensors, ParserAcceptsOtherWritersFiles) {
  // Another writer's choices: no padding, unsorted keys, data not in key order, other dtypes,
  // no metadata. All valid per the format.
  const std::string dir = scratch_dir();
  const std::string path = make_file(
      dir,
      "{\"z\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]},"
      "\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[6,14]}}",
      14);
  const SafetensorsHeader parsed = parse_safetensors(path);
  EXPECT_TRUE(parsed.metadata.empty());
  ASSERT_EQ(parsed.tensors.size(), 2u);
  EXPECT_EQ(parsed.tensors[0].name, "a");
  EXPECT_EQ(parsed.tensors[0].dtype, "I64");
  EXPECT_EQ(parsed.tensors[0].begin, 6);
  EXPECT_EQ(parsed.tensors[1].dtype, "BF16");
}

TEST(Safetensors, ReplacesAnExistingFileAndLeavesNoTemporary) {
  const std::string dir = scratch_dir();
  const std::string path = dir + "/model.safetensors";
  write_file(path, "old contents");
  write_safetensors(path, sources_of(random_tensors(14)), {});
  EXPECT_EQ(parse_safetensors(path).tensors.size(), 7u);
  EXPECT_TRUE(parse_safetensors(path).metadata.empty());
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, AFailedWriteKeepsTheOldFile) {
  const std::string dir = scratch_dir();
  const std::string path = dir + "/model.safetensors";
  write_file(path, "old contents");
  auto sources = sources_of(random_tensors(15));
  sources[2].fill = [](float*) { throw UserError("checkpoint", "", "shard unreadable"); };
  expect_user_error([&] { write_safetensors(path, sources, {}); }, {"shard unreadable"});
  EXPECT_EQ(read_file(path), "old contents");
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1) << "the temporary is removed";
}

TEST(Safetensors, WriterRefusesBadNamesAndShapes) {
  const std::string dir = scratch_dir();
  const std::string path = dir + "/x.safetensors";
  const auto none = [](float*) {};
  expect_user_error([&] { write_safetensors(path, {{"a", {1}, none}, {"a", {2}, none}}, {}); },
                    {path, "'a'", "unique"});
  expect_user_error([&] { write_safetensors(path, {{"__metadata__", {1}, none}}, {}); },
                    {"__metadata__"});
  expect_user_error([&] { write_safetensors(path, {{"", {1}, none}}, {}); }, {"non-empty"});
  expect_user_error([&] { write_safetensors(path, {{"a", {3, -1}, none}}, {}); },
                    {"'a'", "[3,-1]"});
  expect_user_error([&] { write_safetensors(path, {{"a", {1 << 30, 1 << 30, 1 << 30}, none}}, {}); },
                    {"too large"});
  EXPECT_FALSE(fs::exists(path));
}

// --- malformed files ---------------------------------------------------------------------------

TEST(SafetensorsParse, RefusesATruncatedHeaderLength) {
  const std::string dir = scratch_dir();
  const std::string path = dir + "/short.safetensors";
  write_file(path, std::string("\x10\x00\x00\x00\x00", 5));
  expect_user_error([&] { parse_safetensors(path); }, {path, "5 bytes", "8-byte header length"});
  write_file(path, "");
  expect_user_error([&] { parse_safetensors(path); }, {"0 bytes"});
}

TEST(SafetensorsParse, RefusesAHeaderLengthBeyondTheFile) {
  const std::string dir = scratch_dir();
  const std::string path = dir + "/model.safetensors";
  write_safetensors(path, sources_of(random_tensors(16)), kMetadata);
  std::string file = read_file(path);
  const std::string beyond = u64_le(file.size() - 7);  // one byte more than the file holds
  write_file(path, beyond + file.substr(8));
  expect_user_error([&] { parse_safetensors(path); }, {path, "past the end of the file"});
  // A huge length (garbage, or a file that is not safetensors) is refused before allocating.
  write_file(path, u64_le(uint64_t{1} << 62) + file.substr(8));
  expect_user_error([&] { parse_safetensors(path); }, {"100 MB"});
}

TEST(SafetensorsParse, RefusesATruncatedBuffer) {
  const std::string dir = scratch_dir();
  const std::string path = dir + "/model.safetensors";
  write_safetensors(path, sources_of(random_tensors(17)), {});
  const std::string file = read_file(path);
  write_file(path, file.substr(0, file.size() - 3));
  expect_user_error([&] { parse_safetensors(path); }, {"truncated"});
  write_file(path, file + "xyz");
  expect_user_error([&] { parse_safetensors(path); }, {"trailing bytes"});
}

TEST(SafetensorsParse, RefusesHeadersThatAreNotJsonObjects) {
  const std::string dir = scratch_dir();
  expect_user_error([&] { parse_safetensors(make_file(dir, "{\"a\": {\"dtype\": ", 0)); },
                    {"not valid JSON"});
  expect_user_error([&] { parse_safetensors(make_file(dir, "[1, 2]  ", 0)); },
                    {"does not start with '{'"});
  expect_user_error([&] { parse_safetensors(make_file(dir, std::string(8, ' '), 0)); },
                    {"does not start with '{'"});
  expect_user_error([&] { parse_safetensors(make_file(dir, "{a: {dtype: F32}}", 0)); },
                    {"not a string"});
  expect_user_error([&] { parse_safetensors(make_file(dir, "{\"a\": 3}", 0)); },
                    {"'a'", "not a JSON object"});
}

TEST(SafetensorsParse, RefusesBadTensorEntries) {
  const std::string dir = scratch_dir();
  const auto entry = [](const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
    return "{\"t\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets +
           "}}";
  };
  const auto refuses = [&](const std::string& header, size_t buffer, const std::string& part) {
    expect_user_error([&] { parse_safetensors(make_file(dir, header, buffer)); }, {"'t'", part});
  };
  refuses(entry("\"F33\"", "[2]", "[0,8]"), 8, "unknown dtype 'F33'");
  refuses(entry("4", "[2]", "[0,8]"), 8, "\"dtype\" is not a string");
  refuses(entry("\"F32\"", "[-2]", "[0,8]"), 8, "non-negative integers");
  refuses(entry("\"F32\"", "[\"2\"]", "[0,8]"), 8, "non-negative integers");
  refuses(entry("\"F32\"", "[2.5]", "[0,8]"), 8, "non-negative integers");
  refuses(entry("\"F32\"", "2", "[0,8]"), 8, "not an array");
  refuses(entry("\"F32\"", "[2]", "[8,0]"), 8, "data_offsets");
  refuses(entry("\"F32\"", "[2]", "[0]"), 8, "data_offsets");
  refuses(entry("\"F32\"", "[2]", "[0,16]"), 16, "do not hold its shape [2]");
  refuses(entry("\"F32\"", "[4294967296,4294967296]", "[0,8]"), 8, "do not hold its shape");
  refuses("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "lacks");
  refuses("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
          8, "appears twice");
}

TEST(SafetensorsParse, RefusesOffsetsBeyondTheBufferGapsAndOverlaps) {
  const std::string dir = scratch_dir();
  const auto refuses = [&](const std::string& header, size_t buffer,
                           const std::vector<std::string>& parts) {
    expect_user_error([&] { parse_safetensors(make_file(dir, header, buffer)); }, parts);
  };
  // Offsets beyond the buffer: the tensor claims bytes [0, 16) of an 8-byte buffer.
  refuses("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
          {"end at byte 16", "holds 8"});
  refuses("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
          {"'t'", "(gap)"});
  refuses("{\"s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
          12, {"'t'", "(overlap)"});
}

TEST(SafetensorsParse, RefusesNonStringMetadata) {
  const std::string dir = scratch_dir();
  expect_user_error(
      [&] { parse_safetensors(make_file(dir, "{\"__metadata__\":{\"step\":120}}", 0)); },
      {"strings to strings"});
  expect_user_error([&] { parse_safetensors(make_file(dir, "{\"__metadata__\":[1]}", 0)); },
                    {"__metadata__", "not a JSON object"});
  EXPECT_EQ(parse_safetensors(make_file(dir, "{\"__metadata__\":{\"step\":\"120\"}}", 0))
                .metadata.at("step"),
            "120");
}

TEST(SafetensorsParse, RefusesAMissingFile) {
  const std::string dir = scratch_dir();
  expect_user_error([&] { parse_safetensors(dir + "/none.safetensors"); },
                    {"none.safetensors", "cannot open"});
}

}  // namespace
}  // namespace baleine::ckpt
