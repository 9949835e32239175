#pragma once
// The argument checks of kernels/routing.h's ops (std::invalid_argument naming the op and the
// values), shared by the CPU kernels (kernels/cpu/routing.cpp) and the CUDA ones
// (kernels/cuda/routing.cu, balance_loss.cu); a backend's own limits are checked on top.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/routing.h"

namespace baleine::kernels {

inline void check_shape(RoutingShape shape, const char* op) {
  if (shape.tokens < 0 || shape.experts <= 0 || shape.top_k <= 0 ||
      shape.top_k > shape.experts) {
    throw std::invalid_argument(std::string(op) + ": need 0 < top_k <= experts, got top_k=" +
                                std::to_string(shape.top_k) +
                                " experts=" + std::to_string(shape.experts));
  }
}

inline void check_groups(RoutingShape shape, RoutingOptions options, const char* op) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(
        std::string(op) + ": " + what + " (experts=" + std::to_string(shape.experts) +
        " groups=" + std::to_string(options.groups) +
        " max_groups=" + std::to_string(options.max_groups) +
        " top_k=" + std::to_string(shape.top_k) + ")");
  };
  if (options.groups <= 0) fail("need groups >= 1");
  if (shape.experts % options.groups != 0) fail("experts must split into equal groups");
  if (options.max_groups < 0 || options.max_groups > options.groups) {
    fail("need 0 <= max_groups <= groups (0 = no limit)");
  }
  if (options.max_groups > 0 &&
      shape.top_k > options.max_groups * (shape.experts / options.groups)) {
    fail("top_k exceeds the max_groups * experts/groups experts a token can reach");
  }
}

// The balance loss's tokens split into whole sequences of seq_len.
inline void check_sequences(RoutingShape shape, int64_t seq_len, const char* op) {
  check_shape(shape, op);
  if (seq_len <= 0 || shape.tokens % seq_len != 0) {
    throw std::invalid_argument(std::string(op) + ": tokens (" + std::to_string(shape.tokens) +
                                ") must be a positive multiple of seq_len (" +
                                std::to_string(seq_len) + ")");
  }
}

}  // namespace baleine::kernels
