#pragma once
// "Did you mean" suggestions for misspelled keys and names.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zerotrain::config_detail {

/// Edit distance with adjacent transpositions (optimal string alignment), case-insensitive.
size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word` when it is close enough to be a likely
/// misspelling (a few edits, scaled with length) or when one is a prefix of the
/// other; std::nullopt otherwise.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace zerotrain::config_detail
