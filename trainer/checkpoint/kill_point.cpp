// The process-global kill-point hook. Checkpoints may be written by a background thread
// (asynchronous save) while the main thread trains, so the hook is guarded by a mutex and the
// point counter is atomic; the hook itself runs outside the lock, since it may throw or kill.
#include "trainer/checkpoint/kill_point.h"

#include <atomic>
#include <mutex>
#include <utility>

#include "trainer/checkpoint/checkpoint_store.h"

namespace baleine::ckpt {

namespace {

std::mutex hook_mutex;
KillPointHook hook;  // guarded by hook_mutex
std::atomic<bool> armed{false};
std::atomic<int64_t> next_point{0};

}  // namespace

// Setting a hook restarts the count, so "point k" means the same step of the protocol in every
// run that sets the hook before writing (the kill-during-write tests rely on it).
void set_kill_point_hook(KillPointHook new_hook) {
  std::lock_guard<std::mutex> lock(hook_mutex);
  hook = std::move(new_hook);
  next_point = 0;
  armed = static_cast<bool>(hook);
}

namespace detail {

bool kill_points_armed() { return armed.load(std::memory_order_relaxed); }

void kill_point(const std::string& what) {
  if (!kill_points_armed()) return;
  KillPointHook current;
  {
    std::lock_guard<std::mutex> lock(hook_mutex);
    current = hook;
  }
  if (current) current(next_point++, what.c_str());
}

}  // namespace detail

}  // namespace baleine::ckpt
