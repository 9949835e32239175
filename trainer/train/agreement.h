#pragma once
// Failures that every rank must hear about. A step that can fail on some ranks only (writing a
// shard, verifying a checkpoint's files) ends with agree(): if any rank failed, the lowest such
// rank's UserError is broadcast and thrown on every rank, so the job exits 2 with one message
// on rank 0 instead of leaving the healthy ranks waiting in the next collective.
#include <functional>
#include <optional>

#include "parallel/comm.h"
#include "trainer/errors.h"

namespace baleine::train {

// Collective over `group`: throws the failing rank's error on every rank, or returns.
void agree(parallel::Comm& group, const std::optional<UserError>& mine);

// Runs `work`, catching its UserError, then agree().
void run_agreed(parallel::Comm& group, const std::function<void()>& work);

}  // namespace baleine::train
