#include "config/suggest.h"

#include <algorithm>
#include <cctype>

namespace zerotrain::config_detail {

size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  auto eq = [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  };
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = eq(a[i - 1], b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && eq(a[i - 1], b[j - 2]) && eq(a[i - 2], b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = SIZE_MAX;
  // Up to one edit for short words, growing to three for long ones.
  const size_t allowed = std::clamp<size_t>(word.size() / 5, 1, 3);
  for (const std::string& c : candidates) {
    const size_t dist = edit_distance(word, c);
    if (dist <= allowed && dist < best_distance) {
      best = c;
      best_distance = dist;
    }
  }
  if (best) return best;
  // "gradient_accumulation" for "gradient_accumulation_steps".
  for (const std::string& c : candidates) {
    const std::string_view shorter = word.size() < c.size() ? word : std::string_view(c);
    const std::string_view longer = word.size() < c.size() ? std::string_view(c) : word;
    if (shorter.size() >= 6 && longer.substr(0, shorter.size()) == shorter) return c;
  }
  return std::nullopt;
}

}  // namespace zerotrain::config_detail
