#pragma once
// Helpers shared by the routing tests (routing_test.cpp, group_routing_test.cpp): run the
// forward on vectors, and the selection rule written the obvious way.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/routing.h"

namespace baleine::kernels::routing_testing {

template <typename T>
struct RoutedT {
  std::vector<T> scores, weights;
  std::vector<int32_t> chosen;
};
using Routed = RoutedT<double>;

// Keeps `bias` out of template deduction, so a plain nullptr can be passed.
template <typename T>
struct NonDeduced { using type = T; };

template <typename T>
RoutedT<T> route(const std::vector<T>& logits,
                 const typename NonDeduced<std::vector<T>>::type* bias, RoutingShape shape,
                 RoutingOptions options) {
  RoutedT<T> out;
  out.scores.resize(shape.tokens * shape.experts);
  out.chosen.resize(shape.tokens * shape.top_k);
  out.weights.resize(shape.tokens * shape.top_k);
  routing_forward(logits.data(), bias ? bias->data() : nullptr, out.scores.data(),
                  out.chosen.data(), out.weights.data(), shape, options);
  return out;
}

// The selection rule written the obvious way: stable sort by key, descending. std::stable_sort
// keeps equal keys in index order, which is exactly "ties to the lower expert index".
template <typename T>
std::vector<int32_t> brute_force_top_k(const T* scores, const T* bias, int64_t experts,
                                       int64_t top_k) {
  std::vector<int32_t> order(experts);
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int32_t e) { return bias ? T(scores[e] + bias[e]) : scores[e]; };
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return key(a) > key(b); });
  order.resize(top_k);
  return order;
}

}  // namespace baleine::kernels::routing_testing
