#include "trainer/config/did_you_mean.h"

#include <algorithm>

namespace baleine::config {

int edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  // d[i][j]: distance between the first i letters of a and the first j letters of b.
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const int substitution = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + substitution});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_distance = 0;
  for (const std::string& candidate : candidates) {
    const int distance = edit_distance(word, candidate);
    if (best.empty() || distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  // Two edits catch a doubled or dropped letter plus one slip; short words get one, so that
  // an unrelated two-letter word does not "suggest" every other two-letter key.
  const int limit = word.size() <= 3 ? 1 : 2;
  if (!best.empty() && best_distance <= limit) return best;

  // A shortened or lengthened name ("warmup" for "warmup_steps"): suggest only when exactly
  // one candidate contains the word or is contained in it, else the hint would be a guess.
  if (word.size() < 4) return "";
  std::string only;
  for (const std::string& candidate : candidates) {
    if (candidate.find(word) == std::string::npos && word.find(candidate) == std::string::npos) {
      continue;
    }
    if (!only.empty()) return "";
    only = candidate;
  }
  return only;
}

std::string join(const std::vector<std::string>& words, const std::string& separator) {
  std::string joined;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) joined += separator;
    joined += words[i];
  }
  return joined;
}

}  // namespace baleine::config
