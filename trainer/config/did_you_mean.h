#pragma once
// "Did you mean ...?" for misspelt keys and enumeration values.
#include <string>
#include <vector>

namespace baleine::config {

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions, Damerau 1964):
// "stpes" -> "steps" costs 1, as a typist would count it, not 2.
int edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word`, or "" when none is close enough to be a plausible typo
// (at most 2 edits; 1 for words of up to 3 letters), or the one candidate that contains it or
// that it contains ("warmup" -> "warmup_steps").
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

std::string join(const std::vector<std::string>& words, const std::string& separator = ", ");

}  // namespace baleine::config
