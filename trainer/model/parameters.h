#pragma once
// All trainable parameters of a model live in one flat value buffer with a twin gradient
// buffer, so the optimizer, gradient clipping, bucketed all-reduce and ZeRO sharding see
// contiguous ranges. The buffer has two regions: parameters replicated on every data-parallel
// rank first, then the routed experts this rank holds (averaged only over the ranks holding the
// same experts). Layers declare their tensors by name at construction and fetch pointers once
// the store is allocated.
//
// Initial values depend only on (seed, parameter name), never on declaration order or on which
// rank builds the model: every parallel layout starts from the same weights.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/array.h"

namespace baleine::model {

enum class Placement {
  kReplicated,  // every data-parallel rank holds a copy
  kExpert,      // a routed expert: held by the ranks of one expert-parallel index
};

enum class Init {
  kNormal,  // N(0, std²)
  kOnes,    // norm gains
  kZeros,
};

struct ParameterEntry {
  std::string name;             // "blocks.3.attention.wq"
  std::vector<int64_t> shape;
  int64_t offset = 0;           // into the flat buffers
  int64_t size = 0;
  Init init = Init::kNormal;
  double init_std = 0;
  bool weight_decay = false;    // decoupled weight decay applies to matrices only
  Placement placement = Placement::kReplicated;
};

struct Region {
  int64_t offset = 0;
  int64_t size = 0;
};

// The part of an entry inside the flat range [first, first + count), in flat-buffer
// coordinates: a ZeRO shard or a checkpoint slice may start or end inside a parameter.
struct FlatOverlap {
  int64_t lo = 0, hi = 0;  // empty when lo >= hi
};
inline FlatOverlap overlap(const ParameterEntry& e, int64_t first, int64_t count) {
  return {e.offset > first ? e.offset : first,
          e.offset + e.size < first + count ? e.offset + e.size : first + count};
}

template <typename T>
class ParameterStore {
 public:
  using Handle = int;

  Handle declare(std::string name, std::vector<int64_t> shape, Init init, double init_std,
                 bool weight_decay, Placement placement = Placement::kReplicated);
  // Lays out the regions (replicated, then expert), sizes the buffers, initialises values
  // from `seed` and zeroes gradients.
  void allocate(uint64_t seed);
  Region region(Placement placement) const {
    return placement == Placement::kReplicated ? replicated_ : expert_;
  }

  T* value(Handle h) { return values_.data() + entries_[h].offset; }
  const T* value(Handle h) const { return values_.data() + entries_[h].offset; }
  T* grad(Handle h) { return grads_.data() + entries_[h].offset; }

  kernels::Array<T>& values() { return values_; }
  kernels::Array<T>& grads() { return grads_; }
  const kernels::Array<T>& values() const { return values_; }
  const kernels::Array<T>& grads() const { return grads_; }
  const std::vector<ParameterEntry>& entries() const { return entries_; }
  int64_t total() const { return static_cast<int64_t>(values_.size()); }
  void zero_grads();

 private:
  std::vector<ParameterEntry> entries_;
  Region replicated_, expert_;
  kernels::Array<T> values_;  // in the memory current at allocate()
  kernels::Array<T> grads_;
};

// A deterministic N(0,1) stream keyed by (seed, name): splitmix64 + Box-Muller, so the bits do
// not depend on the C++ library's distribution implementation.
class NamedNormalStream {
 public:
  NamedNormalStream(uint64_t seed, const std::string& name);
  double next();

 private:
  uint64_t state_;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace baleine::model
