#pragma once
// The write protocol's fault-injection points (set_kill_point_hook, checkpoint_store.h). Every
// step that a kill could interrupt calls kill_point() before and after itself.
#include <string>

namespace baleine::ckpt::detail {

// Calls the hook, when one is set, with the next point number and `what`; may throw whatever
// the hook throws (or never return, when the hook kills the process).
void kill_point(const std::string& what);

// Whether a hook is set: ShardWriter then writes small chunks so a shard offers many points.
bool kill_points_armed();

}  // namespace baleine::ckpt::detail
