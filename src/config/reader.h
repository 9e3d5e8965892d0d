#pragma once
// The mechanism every config section is parsed with: an ObjectReader walks one
// JSON object, reads declared keys with type and range checks, substitutes
// "auto" values, and records problems in a ParseContext instead of throwing,
// so that one pass reports every problem in the document.
//
// Note [Unknown keys are reported last]
// A reader only learns which keys are valid as the section parser asks for
// them. Readers therefore register (object path, keys present, keys known)
// with the context when they are destroyed, and the context reports unknown
// keys after every section has been parsed. That lets the message for an
// unknown key suggest a near spelling in the same object ("did you mean
// zero_optimization?") or the same key in another section ("loss_scale
// belongs in fp16"), a frequent mistake DeepSpeed users report.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "zerotrain/config.h"

namespace zerotrain::config_detail {

using nlohmann::json;

std::string child_path(std::string_view parent, std::string_view key);
std::string index_path(std::string_view parent, size_t index);
/// A short description of a JSON value for messages: `string "abc"`, `number 3.5`, `an object`.
std::string describe(const json& value);
/// Formats a number for messages without trailing zeros (5e+08, 0.001, 3).
std::string format_number(double value);

/// Inclusive or exclusive numeric bounds, checked after the type.
struct Bounds {
  std::optional<double> lo;
  bool lo_inclusive = true;
  std::optional<double> hi;
  bool hi_inclusive = true;

  static Bounds at_least(double v) { return {v, true, std::nullopt, true}; }
  static Bounds greater_than(double v) { return {v, false, std::nullopt, true}; }
  static Bounds closed(double lo, double hi) { return {lo, true, hi, true}; }
  static Bounds half_open(double lo, double hi) { return {lo, true, hi, false}; }
  static Bounds any() { return {}; }
  /// std::nullopt when `value` is inside, else a message such as "must be >= 0".
  std::optional<std::string> violation(double value) const;
};

class ParseContext {
 public:
  explicit ParseContext(const ResolveOptions& options) : options_(options) {}

  void error(std::string path, std::string message);
  void warn(std::string path, std::string message);
  void unresolved_auto(std::string path) { unresolved_.push_back(std::move(path)); }

  const ResolveOptions& options() const { return options_; }
  const std::vector<ConfigProblem>& errors() const { return errors_; }
  const std::vector<ConfigProblem>& warnings() const { return warnings_; }
  const std::vector<std::string>& unresolved() const { return unresolved_; }
  /// True when `path` holds an "auto" that could not be resolved.
  bool is_unresolved(std::string_view path) const;
  bool has_errors() const { return !errors_.empty(); }

  /// See Note [Unknown keys are reported last].
  void register_object(const std::string& path, std::vector<std::string> present,
                       std::set<std::string> known);
  void report_unknown_keys();

 private:
  struct ObjectKeys {
    std::vector<std::string> present;
    std::set<std::string> known;
  };
  ResolveOptions options_;
  std::vector<ConfigProblem> errors_;
  std::vector<ConfigProblem> warnings_;
  std::vector<std::string> unresolved_;
  std::map<std::string, ObjectKeys> objects_;
};

/// Reads one JSON object. A reader over an absent or null section behaves as an
/// empty object: every getter returns its default.
class ObjectReader {
 public:
  ObjectReader(ParseContext& ctx, std::string path, const json* object);
  ~ObjectReader();
  ObjectReader(ObjectReader&& other) noexcept;
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;
  ObjectReader& operator=(ObjectReader&&) = delete;

  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const { return child_path(path_, key); }
  ParseContext& ctx() { return ctx_; }
  /// True when the JSON object exists (even if empty).
  bool present() const { return object_ != nullptr; }
  /// True when `key` appears in the object (marks it as known).
  bool has(std::string_view key);
  /// The raw value, marking the key as known; nullptr when absent. "auto" is
  /// returned as is: use the typed getters to have it resolved.
  const json* raw(std::string_view key);
  /// Declares a key as valid without reading it.
  void declare(std::string_view key) { known_.emplace(key); }

  bool get_bool(std::string_view key, bool fallback);
  int64_t get_int(std::string_view key, int64_t fallback, Bounds bounds = Bounds::any());
  std::optional<int64_t> get_optional_int(std::string_view key, Bounds bounds = Bounds::any());
  double get_double(std::string_view key, double fallback, Bounds bounds = Bounds::any());
  std::optional<double> get_optional_double(std::string_view key, Bounds bounds = Bounds::any());
  std::string get_string(std::string_view key, std::string fallback);
  /// Reads a string naming one of `choices` (matched case-insensitively when asked).
  template <typename E>
  E get_enum(std::string_view key, E fallback,
             std::initializer_list<std::pair<const char*, E>> choices,
             bool case_insensitive = false);

  /// `key` and its `alias` name one setting; giving both is an error.
  /// Returns the key that is present (or `key` when neither is).
  std::string resolve_alias(std::string_view key, std::string_view alias);

  /// A nested object; absent or null gives an empty reader, another type an error.
  ObjectReader child(std::string_view key);

  /// A key zerotrain knows but does not implement: accepted only when absent or
  /// equal to `default_value`, else "not supported by zerotrain (<what>)".
  void unsupported_unless(std::string_view key, const json& default_value, std::string_view what);

  /// Fetches the value to type-check: the JSON value, or the substitution for
  /// "auto". Returns nullptr for absent keys and unresolved "auto".
  const json* value_for(std::string_view key);

 private:
  ParseContext& ctx_;
  std::string path_;
  const json* object_;
  std::set<std::string> known_;
  bool moved_from_ = false;
  // Storage for substituted "auto" values; std::map keeps references stable.
  std::map<std::string, json, std::less<>> substitutions_;
};

std::string lower(std::string_view s);

template <typename E>
E ObjectReader::get_enum(std::string_view key, E fallback,
                         std::initializer_list<std::pair<const char*, E>> choices,
                         bool case_insensitive) {
  const json* v = value_for(key);
  if (v == nullptr) return fallback;
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    for (const auto& c : choices) {
      if (case_insensitive ? lower(s) == lower(c.first) : s == c.first) return c.second;
    }
  }
  std::string allowed;
  for (const auto& c : choices) allowed += std::string(allowed.empty() ? "" : ", ") + "\"" + c.first + "\"";
  ctx_.error(path_of(key), "expected one of " + allowed + ", got " + describe(*v));
  return fallback;
}

}  // namespace zerotrain::config_detail
