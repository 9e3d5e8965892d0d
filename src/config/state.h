#pragma once
// Internal: what a zerotrain::Config shares between its copies.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/sections.h"
#include "zerotrain/config.h"

namespace zerotrain {

struct Config::State {
  std::string source;
  nlohmann::json document;  // as given, kept to resolve again with other options
  ResolveOptions options;
  config_detail::Sections sections;
  std::vector<std::string> unresolved_auto;
  std::vector<ConfigProblem> warnings;
};

}  // namespace zerotrain
