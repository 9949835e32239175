#include "trainer/train/fault_injection.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "trainer/checkpoint/checkpoint_store.h"

namespace baleine::train {

namespace {

// Kill points passed in the armed checkpoint (the hook advances it).
int64_t points_seen = 0;

bool parse_integer(const std::string& text, int64_t* out) {
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

FaultInjection FaultInjection::from_environment(int rank) {
  FaultInjection f;
  const char* spec = std::getenv("BALEINE_FAULT_INJECT");
  if (!spec) return f;
  std::istringstream fields(spec);
  std::string field;
  int64_t target_rank = -1;
  bool ok = true, has_step = false;
  while (std::getline(fields, field, ',')) {
    const auto eq = field.find('=');
    const std::string key = field.substr(0, eq), value = eq == std::string::npos ? "" : field.substr(eq + 1);
    if (key == "rank") ok &= parse_integer(value, &target_rank);
    else if (key == "step") ok &= has_step = parse_integer(value, &f.step_);
    else if (key == "count") ok &= parse_integer(value, &f.count_);
    else if (key == "point") ok &= parse_integer(value, &f.point_);
    else if (key == "kind") f.kind_ = value;
    else ok = false;
  }
  const bool known = f.kind_ == "exit" || f.kind_ == "hang" || f.kind_ == "nan" ||
                     f.kind_ == "sigterm" || f.kind_ == "kill_in_checkpoint";
  if (!ok || !has_step || target_rank < 0 || !known) {
    std::fprintf(stderr, "warning: ignoring malformed BALEINE_FAULT_INJECT='%s' (expected "
                         "rank=R,step=S,kind=exit|hang|nan|sigterm|kill_in_checkpoint"
                         "[,count=N][,point=P])\n", spec);
    return FaultInjection{};
  }
  f.armed_ = target_rank == rank;
  return f;
}

void FaultInjection::maybe_fail(int64_t step) const {
  if (!armed_ || step != step_) return;
  if (kind_ == "sigterm") {
    std::raise(SIGTERM);
    return;
  }
  if (kind_ != "exit" && kind_ != "hang") return;
  const bool hang = kind_ == "hang";
  std::fprintf(stderr, "fault injection: %s at step %lld\n", hang ? "hanging" : "exiting",
               static_cast<long long>(step));
  std::fflush(stderr);
  if (!hang) std::_Exit(7);
  for (;;) pause();
}

bool FaultInjection::poisons_gradients(int64_t step) {
  if (!armed_ || kind_ != "nan" || step < step_ || poisoned_ >= count_) return false;
  ++poisoned_;
  return true;
}

void FaultInjection::before_checkpoint(int64_t step) const {
  if (!armed_ || kind_ != "kill_in_checkpoint" || step != step_) {
    ckpt::set_kill_point_hook(nullptr);
    return;
  }
  points_seen = 0;
  const int64_t target = point_;
  ckpt::set_kill_point_hook([target](int64_t, const char* what) {
    if (points_seen++ == target) {
      std::fprintf(stderr, "fault injection: SIGKILL at checkpoint kill point %lld (%s)\n",
                   static_cast<long long>(target), what);
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
  });
}

void FaultInjection::after_checkpoint(int64_t step) const {
  if (!armed_ || kind_ != "kill_in_checkpoint" || step != step_) return;
  ckpt::set_kill_point_hook(nullptr);
  std::fprintf(stderr, "fault injection: checkpoint after step %lld passed %lld kill points\n",
               static_cast<long long>(step), static_cast<long long>(points_seen));
  std::fflush(stderr);
}

}  // namespace baleine::train
