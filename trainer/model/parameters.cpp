#include "trainer/model/parameters.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace baleine::model {

template <typename T>
typename ParameterStore<T>::Handle ParameterStore<T>::declare(std::string name,
                                                              std::vector<int64_t> shape,
                                                              Init init, double init_std,
                                                              bool weight_decay,
                                                              Placement placement) {
  if (!values_.empty()) throw std::logic_error("ParameterStore::declare after allocate: " + name);
  ParameterEntry e;
  e.name = std::move(name);
  e.shape = std::move(shape);
  e.size = 1;
  for (int64_t d : e.shape) e.size *= d;
  e.init = init;
  e.placement = placement;
  e.init_std = init_std;
  e.weight_decay = weight_decay;
  entries_.push_back(std::move(e));
  return static_cast<Handle>(entries_.size() - 1);
}

template <typename T>
void ParameterStore<T>::allocate(uint64_t seed) {
  int64_t n = 0;
  for (const Placement placement : {Placement::kReplicated, Placement::kExpert}) {
    Region& region = placement == Placement::kReplicated ? replicated_ : expert_;
    region.offset = n;
    for (auto& e : entries_) {
      if (e.placement != placement) continue;
      e.offset = n;
      n += e.size;
    }
    region.size = n - region.offset;
  }
  // Initial values are made on the host (the stream is sequential per name) and then moved to
  // the store's memory.
  std::vector<T> initial(static_cast<size_t>(n), T(0));
  for (const auto& e : entries_) {
    T* v = initial.data() + e.offset;
    switch (e.init) {
      case Init::kOnes: std::fill(v, v + e.size, T(1)); break;
      case Init::kZeros: break;
      case Init::kNormal: {
        NamedNormalStream normal(seed, e.name);
        for (int64_t i = 0; i < e.size; ++i) v[i] = static_cast<T>(e.init_std * normal.next());
        break;
      }
    }
  }
  values_.assign_from_host(initial.data(), initial.size());
  grads_.resize(0);
  grads_.resize(initial.size());
}

template <typename T>
void ParameterStore<T>::zero_grads() {
  grads_.memory().zero(grads_.data(), grads_.size() * sizeof(T));
}

namespace {
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

NamedNormalStream::NamedNormalStream(uint64_t seed, const std::string& name) : state_(seed) {
  // FNV-1a of the name, folded into the seed.
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  state_ ^= h;
  splitmix64(state_);
}

double NamedNormalStream::next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // Box-Muller on two uniforms in (0, 1].
  const double u1 = (static_cast<double>(splitmix64(state_) >> 11) + 1.0) * 0x1.0p-53;
  const double u2 = static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double two_pi = 6.283185307179586;
  spare_ = r * std::sin(two_pi * u2);
  has_spare_ = true;
  return r * std::cos(two_pi * u2);
}

template class ParameterStore<float>;
template class ParameterStore<double>;

}  // namespace baleine::model
