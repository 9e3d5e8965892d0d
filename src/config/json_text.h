#pragma once
// Parses config text: JSON with `//` and `/* */` comments (DeepSpeed reads
// files with hjson, which allows them), rejecting duplicate keys with their path.

#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "zerotrain/config.h"

namespace zerotrain::config_detail {

/// On failure returns a discarded value and appends the problems (a syntax
/// error with its line and column, or each duplicate key).
nlohmann::json parse_config_text(std::string_view text, std::vector<ConfigProblem>& problems);

}  // namespace zerotrain::config_detail
