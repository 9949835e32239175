// `baleine export` as a user runs it. Checkpoints are built on disk with the checkpoint store's
// own API, as two fake ranks whose shards split tensors mid-row, so the exporter must assemble
// every tensor from both shards. The exported bytes are compared exactly with the values
// written (the export copies floats: no tolerance). Bad input (no checkpoint, an incomplete
// one, a flipped shard byte, a wrong or missing --format) exits 2 with a message that names the
// problem. When python3 exists, a standard-library-only reading of the file per the format's
// text agrees; when training works, an exported run matches its --save-params dump bit for bit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "tests/cli/cli_support.h"
#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/train/param_dump.h"

namespace baleine::testing {
namespace {

namespace fs = std::filesystem;
using ckpt::Kind;

struct FakeTensor {
  std::string name;
  Kind kind;
  std::vector<int64_t> shape;
  int64_t rank1_begin;  // rank 0 writes [0, rank1_begin), rank 1 the rest
  std::vector<float> values;
};

std::vector<FakeTensor> fake_model(uint32_t seed) {
  std::vector<FakeTensor> tensors = {
      {"embedding", Kind::kParam, {13, 8}, 50, {}},  // split in the middle of row 6
      {"blocks.0.attention.wq", Kind::kParam, {8, 8}, 0, {}},          // all on rank 1
      {"blocks.1.moe.experts.3.w2", Kind::kParam, {8, 6}, 48, {}},     // all on rank 0
      {"final_norm.gain", Kind::kParam, {8}, 3, {}},
      {"embedding", Kind::kAdamM, {13, 8}, 20, {}},     // not exported: optimizer state
      {"blocks.1.moe.bias", Kind::kExpertBias, {4}, 2, {}}};  // not exported: routing bias
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (FakeTensor& t : tensors) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    t.values.resize(static_cast<size_t>(n));
    for (float& v : t.values) v = normal(rng);
  }
  return tensors;
}

// The trainer's write protocol (checkpoint_store.h steps 1-3) for two ranks in one process.
std::string write_checkpoint(const std::string& run_dir, int64_t step,
                             const std::vector<FakeTensor>& tensors) {
  const std::string temporary = ckpt::prepare_temporary(run_dir, step);
  for (int rank = 0; rank < 2; ++rank) {
    ckpt::ShardWriter writer(temporary, rank);
    for (const FakeTensor& t : tensors) {
      ckpt::Record record;
      record.name = t.name;
      record.kind = t.kind;
      record.shape = t.shape;
      record.begin = rank == 0 ? 0 : t.rank1_begin;
      record.end = rank == 0 ? t.rank1_begin : static_cast<int64_t>(t.values.size());
      if (record.begin == record.end) continue;
      writer.append(record, t.values.data() + record.begin);
    }
    const ckpt::ShardFile shard = writer.finish();
    ckpt::write_shard_index(temporary, shard, writer.records());
  }
  ckpt::Manifest manifest;
  manifest.baleine_version = "test";
  manifest.step = step;
  manifest.tokens = step * 256;
  manifest.model_hash = "0123abcd";
  manifest.layout.world = 2;
  manifest.layout.dp = 2;
  ckpt::read_shard_indexes(temporary, 2, manifest);
  return ckpt::commit(temporary, manifest, "run:\n  name: fake\n");
}

std::map<std::string, std::vector<float>> read_exported(const std::string& path) {
  const ckpt::SafetensorsHeader header = ckpt::parse_safetensors(path);
  std::map<std::string, std::vector<float>> tensors;
  for (const ckpt::SafetensorsEntry& e : header.tensors) {
    EXPECT_EQ(e.dtype, "F32") << e.name;
    const std::vector<char> bytes = ckpt::read_safetensors_bytes(path, header, e);
    std::vector<float> values(bytes.size() / 4);
    std::memcpy(values.data(), bytes.data(), values.size() * 4);
    tensors[e.name] = values;
  }
  return tensors;
}

void expect_exported_params(const std::string& file, const std::vector<FakeTensor>& model) {
  const auto exported = read_exported(file);
  size_t params = 0;
  for (const FakeTensor& t : model) {
    if (t.kind != Kind::kParam) continue;
    ++params;
    const auto it = exported.find(t.name);
    ASSERT_NE(it, exported.end()) << t.name;
    ASSERT_EQ(it->second.size(), t.values.size()) << t.name;
    EXPECT_EQ(std::memcmp(it->second.data(), t.values.data(), t.values.size() * 4), 0) << t.name;
  }
  EXPECT_EQ(exported.size(), params) << "moments and routing biases are not exported";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(ExportCommand, ExportsEveryParameterAssembledFromBothShards) {
  const std::string dir = scratch_dir();
  const std::string run = dir + "/run";
  const auto model = fake_model(21);
  write_checkpoint(run, 4, model);
  const std::string file = dir + "/out/model.safetensors";
  const auto r = run_baleine("export " + run + " --format safetensors --output " + file);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_exported_params(file, model);

  const ckpt::SafetensorsHeader header = ckpt::parse_safetensors(file);
  EXPECT_EQ(header.metadata.at("step"), "4");
  EXPECT_EQ(header.metadata.at("tokens"), "1024");
  EXPECT_EQ(header.metadata.at("model_hash"), "0123abcd");
  EXPECT_EQ(header.metadata.at("baleine_version"), "test");
  // The summary: 104 + 64 + 48 + 8 = 224 parameters in 4 tensors.
  EXPECT_TRUE(contains(r.output, file)) << r.output;
  EXPECT_TRUE(contains(r.output, "tensors     4")) << r.output;
  EXPECT_TRUE(contains(r.output, "parameters  224")) << r.output;
  EXPECT_TRUE(contains(r.output, "bytes       " + std::to_string(fs::file_size(file))))
      << r.output;
}

TEST(ExportCommand, TakesTheNewestCompleteCheckpointAndDefaultsToRunDirExport) {
  const std::string dir = scratch_dir();
  const std::string run = dir + "/run";
  const auto older = fake_model(22), newer = fake_model(23), torn = fake_model(24);
  write_checkpoint(run, 2, older);
  write_checkpoint(run, 4, newer);
  // A newer checkpoint without DONE (as pruning or a kill leaves one) is never exported.
  const std::string incomplete = write_checkpoint(run, 6, torn);
  fs::remove(incomplete + "/DONE");

  auto r = run_baleine("export " + run + " --format safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string newest = run + "/export/step-000004.safetensors";
  ASSERT_TRUE(fs::exists(newest)) << r.output;
  expect_exported_params(newest, newer);
  EXPECT_FALSE(fs::exists(run + "/export/step-000006.safetensors"));

  // A checkpoint directory named directly; its run directory still receives the export.
  r = run_baleine("export " + run + "/checkpoints/step-000002/ --format=safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_exported_params(run + "/export/step-000002.safetensors", older);

  // The incomplete one named directly is refused, and the newest complete one offered.
  r = run_baleine("export " + incomplete + " --format safetensors");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "incomplete checkpoint")) << r.output;
  EXPECT_TRUE(contains(r.output, "step-000004")) << r.output;
  // No temporaries left beside the outputs.
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(run + "/export")) ++files;
  EXPECT_EQ(files, 2);
}

TEST(ExportCommand, RefusesARunWithoutCheckpoints) {
  const std::string dir = scratch_dir();
  const auto r = run_baleine("export " + dir + " --format safetensors");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "no complete checkpoint in " + dir + "/checkpoints")) << r.output;
  EXPECT_TRUE(contains(r.output, "checkpoint.every")) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/export"));

  const auto missing = run_baleine("export " + dir + "/nowhere --format safetensors");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_TRUE(contains(missing.output, "no such run or checkpoint directory")) << missing.output;
}

TEST(ExportCommand, RefusesAFlippedShardByteNamingTheShard) {
  const std::string dir = scratch_dir();
  const std::string run = dir + "/run";
  write_checkpoint(run, 2, fake_model(25));
  const std::string checkpoint = write_checkpoint(run, 4, fake_model(26));
  const std::string shard = checkpoint + "/shard-00001.bin";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(37);
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x10);
    f.seekp(37);
    f.write(&byte, 1);
  }
  const std::string file = dir + "/model.safetensors";
  const auto r = run_baleine("export " + run + " --format safetensors --output " + file);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "shard-00001.bin")) << r.output;
  EXPECT_TRUE(contains(r.output, "checksum")) << r.output;
  EXPECT_TRUE(contains(r.output, "step-000002")) << "the older complete one is offered: "
                                                 << r.output;
  EXPECT_FALSE(fs::exists(file)) << "nothing is written from a damaged checkpoint";
}

TEST(ExportCommand, RefusesAWrongOrMissingFormat) {
  const std::string dir = scratch_dir();
  const std::string run = dir + "/run";
  write_checkpoint(run, 2, fake_model(27));

  auto r = run_baleine("export " + run + " --format safetensor");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "unknown format 'safetensor'")) << r.output;
  EXPECT_TRUE(contains(r.output, "did you mean 'safetensors'")) << r.output;

  r = run_baleine("export " + run);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "missing --format")) << r.output;

  r = run_baleine("export " + run + " --fromat safetensors");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "did you mean '--format'")) << r.output;

  r = run_baleine("export --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "usage: baleine export")) << r.output;
  EXPECT_FALSE(fs::exists(run + "/export"));
}

// The format read by a program that shares nothing with baleine: Python's json and struct, per
// https://huggingface.co/docs/safetensors ("Format"). It checks the layout rules and prints the
// tensor count, the element count and the sum of all values in name order; the sum is compared
// exactly, since both sides add the same floats, widened to double, in the same order.
const char* const kPythonReader = R"(import json, struct, sys
data = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', data[:8])
assert (8 + n) % 8 == 0, 'buffer not 8-byte aligned'
text = data[8:8 + n].decode('utf-8')
assert text.startswith('{') and text.rstrip(' ').endswith('}')
header = json.loads(text)
meta = header.pop('__metadata__', {})
assert all(isinstance(v, str) for v in meta.values())
buf = data[8 + n:]
end = 0
for name in sorted(header, key=lambda k: header[k]['data_offsets']):
    begin, stop = header[name]['data_offsets']
    assert begin == end, 'gap or overlap at ' + name
    end = stop
assert end == len(buf), 'buffer not covered exactly'
total, elements = 0.0, 0
for name in sorted(header):
    t = header[name]
    assert t['dtype'] == 'F32'
    count = 1
    for d in t['shape']:
        count *= d
    begin, stop = t['data_offsets']
    assert stop - begin == 4 * count
    for v in struct.unpack('<%df' % count, buf[begin:stop]):
        total += v
    elements += count
print(len(header), elements, repr(total), meta['step'])
)";

TEST(ExportCommand, PythonStandardLibraryReadsTheFile) {
  if (std::system("command -v python3 > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 not on PATH";
  }
  const std::string dir = scratch_dir();
  const auto model = fake_model(28);
  write_checkpoint(dir + "/run", 8, model);
  const std::string file = dir + "/model.safetensors";
  auto r = run_baleine("export " + dir + "/run --format safetensors --output " + file);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  write_text(dir + "/reader.py", kPythonReader);

  FILE* pipe = popen(("python3 " + dir + "/reader.py " + file + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[512];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
  ASSERT_EQ(pclose(pipe), 0) << out;

  std::map<std::string, const FakeTensor*> params;  // name order, as the script sums
  for (const FakeTensor& t : model) {
    if (t.kind == Kind::kParam) params[t.name] = &t;
  }
  double total = 0;
  int64_t elements = 0;
  for (const auto& [name, t] : params) {
    for (const float v : t->values) total += v;
    elements += static_cast<int64_t>(t->values.size());
  }
  std::istringstream fields(out);
  size_t count = 0;
  int64_t python_elements = 0;
  std::string python_total, step;
  fields >> count >> python_elements >> python_total >> step;
  EXPECT_EQ(count, params.size()) << out;
  EXPECT_EQ(python_elements, elements) << out;
  EXPECT_EQ(std::strtod(python_total.c_str(), nullptr), total) << out;
  EXPECT_EQ(step, "8") << out;
}

// End to end: a trained run's newest checkpoint (the final step) exports exactly the weights the
// same run dumps with --save-params at its end.
TEST(ExportCommand, ExportOfATrainedRunMatchesItsSavedParameters) {
  const std::string dir = scratch_dir();
  const std::string data = prepared_corpus(dir);
  ASSERT_FALSE(data.empty());
  const std::string run = dir + "/run";
  write_text(dir + "/tiny.yaml", tiny_config(data, run, 4));
  auto r = run_baleine("train " + dir + "/tiny.yaml --set checkpoint.every=2 --save-params " +
                       dir + "/params");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(run + "/checkpoints/step-000004/DONE")) << r.output;

  r = run_baleine("export " + run + " --format safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto exported = read_exported(run + "/export/step-000004.safetensors");
  const auto saved = train::load_params(dir + "/params/rank-0.params");
  ASSERT_EQ(exported.size(), saved.size());
  for (const auto& [name, values] : saved) {
    const auto it = exported.find(name);
    ASSERT_NE(it, exported.end()) << name;
    ASSERT_EQ(it->second.size(), values.size()) << name;
    EXPECT_EQ(std::memcmp(it->second.data(), values.data(), values.size() * 4), 0) << name;
  }
  EXPECT_EQ(ckpt::parse_safetensors(run + "/export/step-000004.safetensors").metadata.at("step"),
            "4");
}

}  // namespace
}  // namespace baleine::testing
