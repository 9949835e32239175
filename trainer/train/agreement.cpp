#include "trainer/train/agreement.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace baleine::train {

namespace {

using parallel::DType;

// Strings travel in fixed-size buffers (a broadcast needs the size up front); longer ones are
// cut, which only shortens a message.
constexpr size_t kTextBytes = 1024;

void broadcast_text(parallel::Comm& group, std::string& text, int root) {
  std::vector<char> buffer(kTextBytes, '\0');
  if (group.rank() == root) std::memcpy(buffer.data(), text.data(), std::min(text.size(), kTextBytes - 1));
  group.broadcast(buffer.data(), static_cast<int64_t>(buffer.size()), DType::kByte, root);
  text = buffer.data();
}

}  // namespace

void agree(parallel::Comm& group, const std::optional<UserError>& mine) {
  std::vector<int64_t> failed(static_cast<size_t>(group.size()), 0);
  const int64_t me = mine ? 1 : 0;
  group.allgather(&me, failed.data(), 1, DType::kInt64);
  const auto first = std::find(failed.begin(), failed.end(), 1);
  if (first == failed.end()) return;
  const int root = static_cast<int>(first - failed.begin());
  std::string where = mine ? mine->where() : "", key = mine ? mine->key() : "";
  std::string what = mine ? mine->message() : "", hint = mine ? mine->hint() : "";
  for (std::string* text : {&where, &key, &what, &hint}) broadcast_text(group, *text, root);
  if (root != 0) what += " (on world rank " + std::to_string(group.world_ranks()[root]) + ")";
  throw UserError(where, key, what, hint);
}

void run_agreed(parallel::Comm& group, const std::function<void()>& work) {
  std::optional<UserError> failure;
  try {
    work();
  } catch (const UserError& e) {
    failure = e;
  }
  agree(group, failure);
}

}  // namespace baleine::train
