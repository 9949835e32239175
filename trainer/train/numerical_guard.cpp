#include "trainer/train/numerical_guard.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace baleine::train {

namespace {

// A spike is only measured against enough history: early steps of a short run never are.
constexpr size_t kMinimumHistory = 20;

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

}  // namespace

NumericalGuard::NumericalGuard(const config::GuardSection& config) : config_(config) {}

GuardVerdict NumericalGuard::check(double loss, double grad_norm) {
  GuardVerdict verdict;
  if (!std::isfinite(loss)) {
    verdict.reason = "loss is " + number(loss);
  } else if (!std::isfinite(grad_norm)) {
    verdict.reason = "gradient norm is " + number(grad_norm);
  } else if (config_.z_score > 0 && recent_.size() >= std::min<size_t>(kMinimumHistory, config_.window)) {
    double mean = 0, square = 0;
    for (const double l : recent_) mean += l;
    mean /= static_cast<double>(recent_.size());
    for (const double l : recent_) square += (l - mean) * (l - mean);
    const double std_dev = std::sqrt(square / static_cast<double>(recent_.size() - 1));
    if (std_dev > 0 && loss > mean + config_.z_score * std_dev) {
      verdict.reason = "loss " + number(loss) + " is " + number((loss - mean) / std_dev) +
                       " standard deviations above the mean " + number(mean) + " of the last " +
                       std::to_string(recent_.size()) + " steps (guard.z_score " +
                       number(config_.z_score) + ")";
    }
  }
  if (verdict.reason.empty()) {
    recent_.push_back(loss);
    while (recent_.size() > static_cast<size_t>(config_.window)) recent_.pop_front();
    consecutive_skips_ = 0;
    return verdict;
  }
  ++consecutive_skips_;
  ++total_skips_;
  if (consecutive_skips_ < config_.max_skips) {
    verdict.action = GuardVerdict::Action::kSkip;
  } else {
    verdict.action = rollbacks_ < config_.max_rollbacks ? GuardVerdict::Action::kRollback
                                                        : GuardVerdict::Action::kStop;
  }
  return verdict;
}

void NumericalGuard::rolled_back() {
  consecutive_skips_ = 0;
  ++rollbacks_;
}

ckpt::GuardState NumericalGuard::state() const {
  ckpt::GuardState s;
  s.recent_losses.assign(recent_.begin(), recent_.end());
  s.consecutive_skips = consecutive_skips_;
  s.total_skips = total_skips_;
  s.rollbacks = rollbacks_;
  return s;
}

void NumericalGuard::restore(const ckpt::GuardState& s) {
  recent_.assign(s.recent_losses.begin(), s.recent_losses.end());
  consecutive_skips_ = s.consecutive_skips;
  total_skips_ = s.total_skips;
  // A rollback restores the checkpoint's guard state, but never forgets rollbacks made since.
  rollbacks_ = std::max(rollbacks_, s.rollbacks);
}

}  // namespace baleine::train
