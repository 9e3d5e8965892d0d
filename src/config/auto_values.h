#pragma once
// Which config paths accept "auto", and what they resolve to (the Hugging Face
// Trainer's fill rules, transformers/integrations/deepspeed.py).

#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "zerotrain/config.h"

namespace zerotrain::config_detail {

struct AutoLookup {
  bool accepted = false;               // "auto" is valid at this path
  std::optional<nlohmann::json> value;  // empty: not resolvable from the options given
};

AutoLookup lookup_auto(const ResolveOptions& options, std::string_view path);

/// The spelling to_json() uses for an auto-capable path: short stage3 aliases
/// and the legacy "bfloat16" map to the names the resolved document uses.
std::string_view canonical_auto_path(std::string_view path);

/// The paths that accept "auto", for documentation and tests.
std::vector<std::string_view> auto_paths();

}  // namespace zerotrain::config_detail
