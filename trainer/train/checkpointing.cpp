#include "trainer/train/checkpointing.h"

#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <optional>
#include <vector>

#include "baleine_version.h"
#include "kernels/fp8.h"
#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/config/fields.h"
#include "trainer/config/value_text.h"
#include "trainer/errors.h"
#include "trainer/train/agreement.h"

namespace baleine::train {

namespace {

namespace fs = std::filesystem;
using ckpt::DType;
using ckpt::Kind;
using model::Placement;

// Host access to `count` values at `data` in `memory` (the model's: a GPU's, or the host's).
// On the host the values are used in place; elsewhere through a host copy, filled by download()
// and written back by upload().
template <typename T>
class HostView {
 public:
  HostView(kernels::Memory& memory, T* data, int64_t count)
      : memory_(memory), data_(data), bytes_(static_cast<size_t>(count) * sizeof(T)) {
    if (!memory.is_host()) copy_.resize(static_cast<size_t>(count));
  }
  T* data() { return memory_.is_host() ? data_ : copy_.data(); }
  void download() {
    if (!memory_.is_host()) memory_.to_host(copy_.data(), data_, bytes_);
  }
  void upload() {
    if (!memory_.is_host()) memory_.from_host(data_, copy_.data(), bytes_);
  }

 private:
  kernels::Memory& memory_;
  T* data_;
  size_t bytes_;
  std::vector<T> copy_;
};

// A HostView of `count` values at `data`, downloaded and kept in `views` (whose elements stay
// put as it grows); its host pointer.
template <typename T>
const T* downloaded(std::deque<HostView<T>>& views, kernels::Memory& memory, T* data,
                    int64_t count) {
  views.emplace_back(memory, data, count);
  views.back().download();
  return views.back().data();
}

// model.* keys and their values, in the config's order.
std::vector<std::pair<std::string, std::string>> model_fields(const config::RunConfig& c) {
  std::vector<std::pair<std::string, std::string>> fields;
  config::for_each_field(c, [&](const std::string& key, const auto& value) {
    if (key.rfind("model.", 0) == 0) fields.emplace_back(key, config::value_text(value));
  });
  return fields;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

DType moment_dtype(const std::string& optimizer_state) {
  return optimizer_state == "bf16" ? DType::kBF16 : DType::kF32;
}

// "layer of this name": the block index of "blocks.<L>.…", -1 otherwise.
int64_t block_of(const std::string& name) {
  if (name.rfind("blocks.", 0) != 0) return -1;
  return std::stoll(name.substr(7));
}

// The differences between the model this config describes and the checkpoint's, for the
// message refusing it ("model.hidden: 64 in the checkpoint, 32 in this config").
std::string model_differences(const config::RunConfig& mine, const std::string& checkpoint_dir) {
  try {
    const config::RunConfig theirs = config::load_config(checkpoint_dir + "/config.yaml");
    const auto a = model_fields(theirs), b = model_fields(mine);
    std::string diff;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (a[i].second != b[i].second) {
        diff += (diff.empty() ? "" : "; ") + a[i].first + ": " + a[i].second +
                " in the checkpoint, " + b[i].second + " in this config";
      }
    }
    return diff;
  } catch (const UserError&) {
    return "";  // the checkpoint's config.yaml is unreadable: the hash alone says it differs
  }
}

}  // namespace

std::string model_hash(const config::RunConfig& config) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, 64-bit
  for (const auto& [key, value] : model_fields(config)) {
    for (const char ch : key + "=" + value + "\n") {
      h ^= static_cast<unsigned char>(ch);
      h *= 1099511628211ull;
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Checkpointer::Checkpointer(const config::RunConfig& config, parallel::ProcessGroups& groups,
                           const PipelinePlan& pipeline, model::Model<float>& model,
                           optim::AdamW& optimizer)
    : config_(config), groups_(groups), pipeline_(pipeline), model_(model), optimizer_(optimizer) {}

bool Checkpointer::in_direction_zero(const std::string& name) const {
  const int64_t block = block_of(name);
  for (size_t i = 0; i < pipeline_.parts.size(); ++i) {
    const auto& part = pipeline_.parts[i];
    const bool holds = block >= 0 ? block >= part.first_layer && block < part.first_layer + part.layers
                       : name == "embedding" ? part.has_embedding
                                             : part.has_head;  // final_norm, head
    if (holds) return pipeline_.part_directions.empty() || pipeline_.part_directions[i] == 0;
  }
  return false;
}

bool Checkpointer::writes_tensor(const model::ParameterEntry& entry) const {
  if (!in_direction_zero(entry.name)) return false;
  const parallel::Comm* holders =
      entry.placement == Placement::kReplicated ? groups_.dp.get() : groups_.expert_dp.get();
  return holders == nullptr || holders->rank() == 0;
}

void Checkpointer::write_shard(const std::string& temporary) {
  auto& params = model_.parameters();
  std::vector<std::pair<ckpt::Record, const void*>> records;
  const auto add = [&](const model::ParameterEntry& e, Kind kind, DType dtype, int64_t begin,
                       int64_t end, const void* data) {
    ckpt::Record r;
    r.name = e.name;
    r.kind = kind;
    r.dtype = dtype;
    r.shape = e.shape;
    r.begin = begin;
    r.end = end;
    records.emplace_back(r, data);
  };
  HostView<float> values(params.values().memory(), params.values().data(), params.total());
  values.download();
  for (const auto& e : params.entries()) {
    if (writes_tensor(e)) add(e, Kind::kParam, DType::kF32, 0, e.size, values.data() + e.offset);
  }
  // The records point into these until the shard is written.
  std::deque<HostView<float>> f32_moments;
  std::deque<HostView<uint16_t>> bf16_moments;
  for (const auto& slice : optimizer_.moment_slices()) {
    const bool writer = slice.sharded || slice.holders == nullptr || slice.holders->rank() == 0;
    if (!writer) continue;
    const bool bf16 = slice.m_bf16 != nullptr;
    const void* m = bf16 ? static_cast<const void*>(
                               downloaded(bf16_moments, *slice.memory, slice.m_bf16, slice.count))
                         : downloaded(f32_moments, *slice.memory, slice.m, slice.count);
    const void* v = bf16 ? static_cast<const void*>(
                               downloaded(bf16_moments, *slice.memory, slice.v_bf16, slice.count))
                         : downloaded(f32_moments, *slice.memory, slice.v, slice.count);
    const DType dtype = bf16 ? DType::kBF16 : DType::kF32;
    const size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    for (const auto& e : params.entries()) {
      const auto [lo, hi] = model::overlap(e, slice.first, slice.count);
      if (lo >= hi || !in_direction_zero(e.name)) continue;
      const size_t at = static_cast<size_t>(lo - slice.first) * element;
      add(e, Kind::kAdamM, dtype, lo - e.offset, hi - e.offset, static_cast<const char*>(m) + at);
      add(e, Kind::kAdamV, dtype, lo - e.offset, hi - e.offset, static_cast<const char*>(v) + at);
    }
  }
  const auto layers = model_.moe_layers();
  const auto indices = model_.moe_layer_indices();
  const bool first_replica = groups_.dp == nullptr || groups_.dp->rank() == 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    model::ParameterEntry bias;
    bias.name = "blocks." + std::to_string(indices[i]) + ".moe.bias";
    bias.shape = {static_cast<int64_t>(layers[i]->bias().size())};
    if (first_replica && in_direction_zero(bias.name)) {
      add(bias, Kind::kExpertBias, DType::kF32, 0, bias.shape[0], layers[i]->bias().data());
    }
  }
  if (records.empty()) return;
  ckpt::ShardWriter writer(temporary, groups_.rank());
  for (auto& [record, data] : records) writer.append(record, data);
  const ckpt::ShardFile shard = writer.finish();
  ckpt::write_shard_index(temporary, shard, writer.records());
}

std::string Checkpointer::save(const TrainingPosition& at, const ckpt::GuardState& guard,
                               const ckpt::LedgerPosition& ledger) {
  parallel::Comm& world = *groups_.world;
  const std::string& run_dir = config_.run.dir;
  run_agreed(world, [&] {
    if (groups_.is_root()) ckpt::prepare_temporary(run_dir, at.step);
  });
  const std::string temporary =
      ckpt::checkpoints_root(run_dir) + "/.tmp-" + ckpt::checkpoint_dir_name(at.step);
  run_agreed(world, [&] { write_shard(temporary); });
  std::string path = ckpt::checkpoints_root(run_dir) + "/" + ckpt::checkpoint_dir_name(at.step);
  run_agreed(world, [&] {
    if (!groups_.is_root()) return;
    ckpt::Manifest m;
    m.baleine_version = BALEINE_VERSION;
    m.created = utc_now();
    m.step = at.step;
    m.tokens = at.tokens;
    m.next_batch = at.next_batch;
    m.seed = config_.run.seed;
    m.model_hash = model_hash(config_);
    m.precision = config_.precision.compute;
    m.optimizer_state = config_.precision.optimizer_state;
    m.layout = {world.size(), static_cast<int>(config_.parallel.pp),
                static_cast<int>(config_.parallel.dp), static_cast<int>(config_.parallel.ep),
                config_.parallel.schedule, config_.parallel.zero == 1};
    m.ledger = ledger;
    m.guard = guard;
    ckpt::read_shard_indexes(temporary, world.size(), m);
    path = ckpt::commit(temporary, m, config::config_to_yaml(config_));
    ckpt::prune(run_dir, config_.checkpoint.keep);
  });
  return path;
}

std::string Checkpointer::choose(const std::string& requested) const {
  if (!requested.empty()) {
    if (!ckpt::is_complete_checkpoint(requested)) {
      throw UserError(requested, "", fs::exists(requested) ? "not a complete checkpoint (no DONE "
                                                             "marker or no manifest.json)"
                                                           : "no such checkpoint directory",
                      "--resume-from takes a checkpoint directory, e.g. " +
                          ckpt::checkpoints_root(config_.run.dir) + "/" +
                          ckpt::checkpoint_dir_name(100));
    }
    return requested;
  }
  return ckpt::newest_complete_checkpoint(config_.run.dir).value_or("");
}

std::string Checkpointer::older_checkpoint_hint(const std::string& checkpoint_dir) const {
  fs::path dir = fs::path(checkpoint_dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // "…/step-000040/"
  const auto step = ckpt::parse_checkpoint_dir_name(dir.filename().string());
  const auto older = ckpt::newest_complete_checkpoint(config_.run.dir, step.value_or(INT64_MAX));
  if (older) {
    return "the next older complete checkpoint is " + *older + ": resume from it with "
           "--resume-from " + *older + " (or move " + checkpoint_dir + " aside)";
  }
  return "no older complete checkpoint in " + ckpt::checkpoints_root(config_.run.dir) +
         ": move " + checkpoint_dir + " aside to start afresh, or train in another run.dir";
}

ckpt::Manifest Checkpointer::load(const std::string& checkpoint_dir) {
  parallel::Comm& world = *groups_.world;
  ckpt::Manifest m;
  run_agreed(world, [&] {
    try {
      m = ckpt::read_manifest(checkpoint_dir);
    } catch (const UserError& e) {
      throw UserError(e.where(), e.key(), e.message(), older_checkpoint_hint(checkpoint_dir));
    }
    if (m.model_hash != model_hash(config_)) {
      const std::string diff = model_differences(config_, checkpoint_dir);
      throw UserError(checkpoint_dir, "",
                      "checkpoint of a different model" + (diff.empty() ? "" : ": " + diff),
                      "resume with the model section it was trained with, or train the new "
                      "model in another run.dir");
    }
    const std::string bad = ckpt::verify_shards(checkpoint_dir, m, world.rank(), world.size());
    if (!bad.empty()) throw UserError(checkpoint_dir, "", bad, older_checkpoint_hint(checkpoint_dir));
  });
  run_agreed(world, [&] { read_state(checkpoint_dir, m); });
  return m;
}

void Checkpointer::read_state(const std::string& checkpoint_dir, const ckpt::Manifest& m) {
  const ckpt::TensorReader reader(checkpoint_dir, m);
  auto& params = model_.parameters();
  HostView<float> values(params.values().memory(), params.values().data(), params.total());
  for (const auto& e : params.entries()) {
    if (reader.shape(e.name, Kind::kParam) != e.shape) {
      throw UserError(checkpoint_dir, "", "tensor " + e.name + " has another shape in the "
                                          "checkpoint than in this model",
                      "resume with the model section it was trained with");
    }
    reader.read(e.name, Kind::kParam, DType::kF32, 0, e.size, values.data() + e.offset);
  }
  values.upload();
  // Moments: read in the stored dtype; converted when precision.optimizer_state changed.
  const DType stored = moment_dtype(m.optimizer_state);
  std::vector<uint16_t> codes;
  std::vector<float> decoded;
  for (const auto& slice : optimizer_.moment_slices()) {
    for (const Kind kind : {Kind::kAdamM, Kind::kAdamV}) {
      float* f32_moment = kind == Kind::kAdamM ? slice.m : slice.v;
      uint16_t* bf16_moment = kind == Kind::kAdamM ? slice.m_bf16 : slice.v_bf16;
      std::optional<HostView<float>> f32;
      std::optional<HostView<uint16_t>> bf16;
      if (f32_moment) f32.emplace(*slice.memory, f32_moment, slice.count);
      if (bf16_moment) bf16.emplace(*slice.memory, bf16_moment, slice.count);
      for (const auto& e : params.entries()) {
        const auto [lo, hi] = model::overlap(e, slice.first, slice.count);
        if (lo >= hi) continue;
        const int64_t at = lo - slice.first, n = hi - lo;
        if (stored == DType::kF32) {
          float* dst = f32 ? f32->data() + at
                           : (decoded.resize(static_cast<size_t>(n)), decoded.data());
          reader.read(e.name, kind, stored, lo - e.offset, hi - e.offset, dst);
          if (!f32) {
            for (int64_t i = 0; i < n; ++i) bf16->data()[at + i] = kernels::bf16_encode(decoded[i]);
          }
        } else {
          uint16_t* dst = bf16 ? bf16->data() + at
                               : (codes.resize(static_cast<size_t>(n)), codes.data());
          reader.read(e.name, kind, stored, lo - e.offset, hi - e.offset, dst);
          if (!bf16) {
            for (int64_t i = 0; i < n; ++i) f32->data()[at + i] = kernels::bf16_decode(codes[i]);
          }
        }
      }
      if (f32) f32->upload();
      if (bf16) bf16->upload();
    }
  }
  const auto layers = model_.moe_layers();
  const auto indices = model_.moe_layer_indices();
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& bias = layers[i]->bias();
    const std::string name = "blocks." + std::to_string(indices[i]) + ".moe.bias";
    reader.read(name, Kind::kExpertBias, DType::kF32, 0, static_cast<int64_t>(bias.size()), bias.data());
  }
}

}  // namespace baleine::train
