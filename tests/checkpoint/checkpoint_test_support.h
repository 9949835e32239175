#pragma once
// Shared by the checkpoint tests: random values that stress the JSON round trip (every double
// bit pattern, int64 near its limit, names full of quotes and control characters), a random
// consistent manifest, a field-by-field comparison of manifests, and fake ranks that write a
// random model through the whole store protocol and check it reads back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "trainer/checkpoint/checkpoint_format.h"
#include "trainer/checkpoint/checkpoint_store.h"

namespace baleine::ckpt::testing {

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// A finite double from random bits: every exponent, subnormals and both zeros.
inline double random_finite_double(std::mt19937_64& rng) {
  while (true) {
    const uint64_t bits = rng();
    double value;
    std::memcpy(&value, &bits, sizeof(value));
    if (std::isfinite(value)) return value;
  }
}

// Printable ASCII with quotes, backslashes and control characters mixed in.
inline std::string random_text(std::mt19937_64& rng, size_t max_length = 20) {
  static const char kSpecial[] = {'"', '\\', '\n', '\t', '\x01', '\x1f', '/', '\''};
  std::string text;
  const size_t length = 1 + rng() % max_length;
  for (size_t i = 0; i < length; ++i) {
    text +=
        rng() % 4 == 0 ? kSpecial[rng() % sizeof(kSpecial)] : static_cast<char>(' ' + rng() % 95);
  }
  return text;
}

// A manifest whose every field is random and whose records are consistent: each tensor split
// into 1..3 records scattered over the shards, packed back to back in each shard.
inline Manifest random_manifest(std::mt19937_64& rng) {
  Manifest m;
  m.baleine_version = random_text(rng);
  m.created = "2025-01-02T03:04:05Z";
  m.step = (int64_t{1} << 62) + static_cast<int64_t>(rng() % 1000);
  m.tokens = (int64_t{1} << 62) - static_cast<int64_t>(rng() % 1000);
  m.next_batch = static_cast<int64_t>(rng() >> 2);
  m.seed = (uint64_t{1} << 63) + rng() % (uint64_t{1} << 62);  // above int64's range
  m.model_hash = random_text(rng);
  m.precision = "fp8";
  m.optimizer_state = random_text(rng);
  m.fp8_state = random_text(rng);
  m.layout = {static_cast<int>(1 + rng() % 64), 2, 3, 4, random_text(rng), rng() % 2 == 0};
  m.ledger = {static_cast<int64_t>(rng() >> 1), static_cast<int64_t>(rng() >> 1),
              random_finite_double(rng)};
  for (size_t i = 0, n = rng() % 6; i < n; ++i) {
    m.guard.recent_losses.push_back(random_finite_double(rng));
  }
  m.guard.consecutive_skips = static_cast<int64_t>(rng() % 5);
  m.guard.total_skips = static_cast<int64_t>(rng() >> 1);
  m.guard.rollbacks = static_cast<int64_t>(rng() % 3);

  const int shards = 1 + static_cast<int>(rng() % 4);
  for (int s = 0; s < shards; ++s) {
    ShardFile shard;
    shard.file = "shard-0000" + std::to_string(s) + ".bin";
    shard.rank = s;
    shard.crc32c = static_cast<uint32_t>(rng());
    m.shards.push_back(shard);
  }
  for (int t = 0, tensors = 1 + static_cast<int>(rng() % 6); t < tensors; ++t) {
    Record base;
    base.name = "blocks." + std::to_string(t) + "." + random_text(rng, 8);
    base.kind = static_cast<Kind>(rng() % 4);
    base.dtype = rng() % 2 ? DType::kF32 : DType::kBF16;
    base.shape = {1 + static_cast<int64_t>(rng() % 50), 1 + static_cast<int64_t>(rng() % 50)};
    const int64_t elements = base.shape[0] * base.shape[1];
    int64_t begin = 0;
    for (int piece = 0, pieces = 1 + static_cast<int>(rng() % 3); piece < pieces; ++piece) {
      Record record = base;
      record.begin = begin;
      record.end = piece + 1 == pieces
                       ? elements
                       : begin + static_cast<int64_t>(rng() % (elements - begin + 1));
      record.shard = static_cast<int>(rng() % shards);
      record.offset = m.shards[record.shard].bytes;
      m.shards[record.shard].bytes += record.bytes();
      m.records.push_back(record);
      begin = record.end;
    }
  }
  return m;
}

inline void expect_same_manifest(const Manifest& a, const Manifest& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.baleine_version, b.baleine_version);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.next_batch, b.next_batch);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.model_hash, b.model_hash);
  EXPECT_EQ(a.precision, b.precision);
  EXPECT_EQ(a.optimizer_state, b.optimizer_state);
  EXPECT_EQ(a.fp8_state, b.fp8_state);
  EXPECT_EQ(a.layout.world, b.layout.world);
  EXPECT_EQ(a.layout.pp, b.layout.pp);
  EXPECT_EQ(a.layout.dp, b.layout.dp);
  EXPECT_EQ(a.layout.ep, b.layout.ep);
  EXPECT_EQ(a.layout.schedule, b.layout.schedule);
  EXPECT_EQ(a.layout.zero, b.layout.zero);
  EXPECT_EQ(a.ledger.restart, b.ledger.restart);
  EXPECT_EQ(a.ledger.ledger_bytes, b.ledger.ledger_bytes);
  EXPECT_TRUE(same_bits(a.ledger.device_seconds, b.ledger.device_seconds))
      << a.ledger.device_seconds << " vs " << b.ledger.device_seconds;
  ASSERT_EQ(a.guard.recent_losses.size(), b.guard.recent_losses.size());
  for (size_t i = 0; i < a.guard.recent_losses.size(); ++i) {
    EXPECT_TRUE(same_bits(a.guard.recent_losses[i], b.guard.recent_losses[i]))
        << a.guard.recent_losses[i] << " vs " << b.guard.recent_losses[i];
  }
  EXPECT_EQ(a.guard.consecutive_skips, b.guard.consecutive_skips);
  EXPECT_EQ(a.guard.total_skips, b.guard.total_skips);
  EXPECT_EQ(a.guard.rollbacks, b.guard.rollbacks);
  ASSERT_EQ(a.shards.size(), b.shards.size());
  for (size_t i = 0; i < a.shards.size(); ++i) {
    EXPECT_EQ(a.shards[i].file, b.shards[i].file);
    EXPECT_EQ(a.shards[i].rank, b.shards[i].rank);
    EXPECT_EQ(a.shards[i].bytes, b.shards[i].bytes);
    EXPECT_EQ(a.shards[i].crc32c, b.shards[i].crc32c);
  }
  ASSERT_EQ(a.records.size(), b.records.size());
  for (size_t i = 0; i < a.records.size(); ++i) {
    const Record& x = a.records[i];
    const Record& y = b.records[i];
    EXPECT_EQ(x.name, y.name) << "record " << i;
    EXPECT_EQ(x.kind, y.kind) << "record " << i;
    EXPECT_EQ(x.dtype, y.dtype) << "record " << i;
    EXPECT_EQ(x.shape, y.shape) << "record " << i;
    EXPECT_EQ(x.begin, y.begin) << "record " << i;
    EXPECT_EQ(x.end, y.end) << "record " << i;
    EXPECT_EQ(x.shard, y.shard) << "record " << i;
    EXPECT_EQ(x.offset, y.offset) << "record " << i;
  }
}

// --- the store protocol with fake ranks -------------------------------------------------

// A whole tensor's random bytes, as the trainer would hold it after a gather.
struct Tensor {
  std::string name;
  Kind kind;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  int64_t elements() const { return static_cast<int64_t>(bytes.size()) / dtype_bytes(dtype); }
};

// A small MoE-like model: f32 parameters, bf16 and f32 moments, an expert bias. embed's
// 10 KiB span several 4 KiB chunks so the kill test can land inside a record.
inline std::vector<Tensor> random_tensors(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> tensors = {
      {"embed", Kind::kParam, DType::kF32, {64, 40}, {}},
      {"embed", Kind::kAdamM, DType::kBF16, {64, 40}, {}},
      {"blocks.0.attention.wq", Kind::kParam, DType::kF32, {40, 24}, {}},
      {"blocks.0.attention.wq", Kind::kAdamV, DType::kF32, {40, 24}, {}},
      {"blocks.1.moe.bias", Kind::kExpertBias, DType::kF32, {8}, {}},
      {"norm", Kind::kParam, DType::kF32, {40}, {}},
  };
  for (Tensor& t : tensors) {
    int64_t elements = 1;
    for (const int64_t d : t.shape) elements *= d;
    t.bytes.resize(static_cast<size_t>(elements * dtype_bytes(t.dtype)));
    for (auto& byte : t.bytes) byte = static_cast<unsigned char>(rng());
  }
  return tensors;
}

struct Slice {
  size_t tensor;
  int64_t begin, end;
};

// Every tensor cut at `cuts` random points into pieces dealt to random ranks, each rank's
// pieces in a random order; ranks >= `writing_ranks` get nothing (no shard, no index).
inline std::vector<std::vector<Slice>> random_slices(const std::vector<Tensor>& tensors, int ranks,
                                                     int writing_ranks, int cuts_per_tensor,
                                                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<Slice>> slices(static_cast<size_t>(ranks));
  for (size_t t = 0; t < tensors.size(); ++t) {
    const int64_t n = tensors[t].elements();
    std::vector<int64_t> cuts = {0, n};
    for (int i = 0; i < cuts_per_tensor; ++i) cuts.push_back(static_cast<int64_t>(rng() % (n + 1)));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      slices[rng() % static_cast<size_t>(writing_ranks)].push_back({t, cuts[i], cuts[i + 1]});
    }
  }
  for (auto& rank : slices) std::shuffle(rank.begin(), rank.end(), rng);
  return slices;
}

struct Model {
  std::vector<Tensor> tensors;
  std::vector<std::vector<Slice>> slices;  // per rank
};

inline Model random_model(uint64_t seed, int ranks = 3, int writing_ranks = 3,
                          int cuts_per_tensor = 3) {
  Model model;
  model.tensors = random_tensors(seed);
  model.slices = random_slices(model.tensors, ranks, writing_ranks, cuts_per_tensor, seed + 1);
  return model;
}

// The trainer's protocol, steps 1-3, with every rank in this process.
inline std::string write_checkpoint(const std::string& run_dir, int64_t step, const Model& model) {
  const std::string temporary = prepare_temporary(run_dir, step);
  const int world = static_cast<int>(model.slices.size());
  for (int rank = 0; rank < world; ++rank) {
    if (model.slices[rank].empty()) continue;
    ShardWriter writer(temporary, rank);
    for (const Slice& slice : model.slices[rank]) {
      const Tensor& t = model.tensors[slice.tensor];
      Record record;
      record.name = t.name;
      record.kind = t.kind;
      record.dtype = t.dtype;
      record.shape = t.shape;
      record.begin = slice.begin;
      record.end = slice.end;
      writer.append(record, t.bytes.data() + slice.begin * dtype_bytes(t.dtype));
    }
    const ShardFile shard = writer.finish();
    write_shard_index(temporary, shard, writer.records());
  }
  Manifest m;
  m.baleine_version = "test";
  m.step = step;
  m.tokens = step * 4096;
  m.next_batch = step + 1;
  m.seed = 0xFEEDFACECAFEBEEFull;
  m.layout.world = world;
  read_shard_indexes(temporary, world, m);
  return commit(temporary, m, "model: {dim: 40}\n");
}

// Every tensor read back whole, and from random ranges that span records, equals its bytes.
inline void expect_tensors(const std::string& dir, const std::vector<Tensor>& tensors,
                           uint64_t seed) {
  const Manifest m = read_manifest(dir);
  const TensorReader reader(dir, m);
  std::mt19937_64 rng(seed);
  for (const Tensor& t : tensors) {
    SCOPED_TRACE(t.name + " " + kind_name(t.kind));
    ASSERT_TRUE(reader.has(t.name, t.kind));
    EXPECT_EQ(reader.shape(t.name, t.kind), t.shape);
    const int64_t n = t.elements(), width = dtype_bytes(t.dtype);
    std::vector<std::pair<int64_t, int64_t>> ranges = {{0, n}, {0, 0}, {n, n}, {n - 1, n}};
    for (int i = 0; i < 20; ++i) {
      int64_t a = static_cast<int64_t>(rng() % (n + 1)), b = static_cast<int64_t>(rng() % (n + 1));
      ranges.emplace_back(std::min(a, b), std::max(a, b));
    }
    for (const auto& [begin, end] : ranges) {
      std::vector<unsigned char> got(static_cast<size_t>((end - begin) * width) + 1, 0xA5);
      reader.read(t.name, t.kind, t.dtype, begin, end, got.data());
      ASSERT_TRUE(std::equal(got.begin(), got.end() - 1, t.bytes.begin() + begin * width))
          << "elements [" << begin << ", " << end << ")";
      ASSERT_EQ(got.back(), 0xA5) << "wrote past the end of [" << begin << ", " << end << ")";
    }
  }
}

inline std::string shard_path(const std::string& dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "shard-%05d.bin", rank);
  return (std::filesystem::path(dir) / name).string();
}

inline std::vector<std::string> hidden_entries(const std::string& run_dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(checkpoints_root(run_dir))) {
    const std::string name = entry.path().filename().string();
    if (name[0] == '.') names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace baleine::ckpt::testing
