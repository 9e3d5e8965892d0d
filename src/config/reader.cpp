#include "config/reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

#include "config/auto_values.h"
#include "config/suggest.h"

namespace zerotrain::config_detail {

std::string child_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  std::string out(parent);
  out += '.';
  out += key;
  return out;
}

std::string index_path(std::string_view parent, size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[64];
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", value);
  } else {
    std::snprintf(buf, sizeof(buf), "%.10g", value);
  }
  return buf;
}

std::string describe(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return value.get<bool>() ? "true" : "false";
    case json::value_t::string: return "string " + value.dump();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer " + value.dump();
    case json::value_t::number_float: return "number " + format_number(value.get<double>());
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array of " + std::to_string(value.size());
    default: return "a value of unexpected type";
  }
}

std::optional<std::string> Bounds::violation(double value) const {
  if (std::isnan(value)) return std::string("must be a number, not nan");
  const bool lo_bad = lo && (lo_inclusive ? value < *lo : value <= *lo);
  const bool hi_bad = hi && (hi_inclusive ? value > *hi : value >= *hi);
  if (!lo_bad && !hi_bad) return std::nullopt;
  if (lo && hi) {
    return "must be in " + std::string(lo_inclusive ? "[" : "(") + format_number(*lo) + ", " +
           format_number(*hi) + (hi_inclusive ? "]" : ")");
  }
  if (lo) return std::string("must be ") + (lo_inclusive ? ">= " : "> ") + format_number(*lo);
  return std::string("must be ") + (hi_inclusive ? "<= " : "< ") + format_number(*hi);
}

// ---------------------------------------------------------------------------
// ParseContext
// ---------------------------------------------------------------------------

void ParseContext::error(std::string path, std::string message) {
  // One problem per path: the first is the most specific.
  for (const auto& e : errors_) {
    if (e.path == path) return;
  }
  errors_.push_back({std::move(path), std::move(message)});
}

void ParseContext::warn(std::string path, std::string message) {
  warnings_.push_back({std::move(path), std::move(message)});
}

bool ParseContext::is_unresolved(std::string_view path) const {
  return std::find(unresolved_.begin(), unresolved_.end(), path) != unresolved_.end();
}

void ParseContext::register_object(const std::string& path, std::vector<std::string> present,
                                   std::set<std::string> known) {
  ObjectKeys& entry = objects_[path];
  for (auto& k : present) {
    if (std::find(entry.present.begin(), entry.present.end(), k) == entry.present.end()) {
      entry.present.push_back(std::move(k));
    }
  }
  entry.known.insert(known.begin(), known.end());
}

void ParseContext::report_unknown_keys() {
  for (const auto& [path, keys] : objects_) {
    for (const std::string& key : keys.present) {
      if (keys.known.count(key) != 0) continue;
      std::string message = "unknown key";
      std::vector<std::string> candidates(keys.known.begin(), keys.known.end());
      if (auto near = closest_match(key, candidates)) {
        message += "; did you mean \"" + *near + "\"?";
      } else {
        // The same key under another section, e.g. fp16's loss_scale placed under bf16.
        std::vector<std::string> homes;
        for (const auto& [other_path, other] : objects_) {
          if (other_path != path && other.known.count(key) != 0) {
            homes.push_back(other_path.empty() ? "the top level" : "\"" + other_path + "\"");
          }
        }
        if (!homes.empty()) {
          message += "; \"" + key + "\" belongs in " + homes.front();
          for (size_t i = 1; i < homes.size(); ++i) message += " or " + homes[i];
        }
      }
      errors_.push_back({child_path(path, key), message});
    }
  }
}

// ---------------------------------------------------------------------------
// ObjectReader
// ---------------------------------------------------------------------------

ObjectReader::ObjectReader(ParseContext& ctx, std::string path, const json* object)
    : ctx_(ctx), path_(std::move(path)), object_(object) {
  if (object_ != nullptr && object_->is_null()) object_ = nullptr;
}

ObjectReader::ObjectReader(ObjectReader&& other) noexcept
    : ctx_(other.ctx_),
      path_(std::move(other.path_)),
      object_(other.object_),
      known_(std::move(other.known_)),
      substitutions_(std::move(other.substitutions_)) {
  other.moved_from_ = true;
}

ObjectReader::~ObjectReader() {
  if (moved_from_) return;
  std::vector<std::string> present;
  if (object_ != nullptr && object_->is_object()) {
    for (auto it = object_->begin(); it != object_->end(); ++it) present.push_back(it.key());
  }
  ctx_.register_object(path_, std::move(present), std::move(known_));
}

bool ObjectReader::has(std::string_view key) {
  declare(key);
  return object_ != nullptr && object_->contains(key);
}

const json* ObjectReader::raw(std::string_view key) {
  declare(key);
  if (object_ == nullptr) return nullptr;
  auto it = object_->find(key);
  return it == object_->end() ? nullptr : &*it;
}

const json* ObjectReader::value_for(std::string_view key) {
  const json* v = raw(key);
  if (v == nullptr) return nullptr;
  if (!(v->is_string() && v->get<std::string>() == "auto")) return v;
  const std::string path = path_of(key);
  const AutoLookup lookup = lookup_auto(ctx_.options(), path);
  if (!lookup.accepted) {
    ctx_.error(path, "\"auto\" is not accepted here: zerotrain resolves \"auto\" only for the keys the "
                     "Hugging Face Trainer fills (see docs/config.md); give a value");
    return nullptr;
  }
  if (!lookup.value) {
    ctx_.unresolved_auto(path);
    return nullptr;
  }
  auto [it, inserted] = substitutions_.insert_or_assign(std::string(key), *lookup.value);
  return &it->second;
}

bool ObjectReader::get_bool(std::string_view key, bool fallback) {
  const json* v = value_for(key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) {
    ctx_.error(path_of(key), "expected true or false, got " + describe(*v));
    return fallback;
  }
  return v->get<bool>();
}

namespace {
// JSON integers, and numbers with an integral value such as 5e8 (common in DeepSpeed configs).
std::optional<int64_t> as_integer(const json& v) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9.0e18) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}
}  // namespace

std::optional<int64_t> ObjectReader::get_optional_int(std::string_view key, Bounds bounds) {
  const json* v = value_for(key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  const auto i = as_integer(*v);
  if (!i) {
    ctx_.error(path_of(key), v->is_number() && !v->is_number_float()
                                 ? "out of the 64-bit integer range, got " + v->dump()
                                 : "expected an integer, got " + describe(*v));
    return std::nullopt;
  }
  if (auto bad = bounds.violation(static_cast<double>(*i))) {
    ctx_.error(path_of(key), *bad + ", got " + std::to_string(*i));
    return std::nullopt;
  }
  return i;
}

int64_t ObjectReader::get_int(std::string_view key, int64_t fallback, Bounds bounds) {
  const json* v = raw(key);
  if (v != nullptr && v->is_null()) {
    ctx_.error(path_of(key), "expected an integer, got null");
    return fallback;
  }
  return get_optional_int(key, bounds).value_or(fallback);
}

std::optional<double> ObjectReader::get_optional_double(std::string_view key, Bounds bounds) {
  const json* v = value_for(key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_number()) {
    ctx_.error(path_of(key), "expected a number, got " + describe(*v));
    return std::nullopt;
  }
  const double d = v->get<double>();
  if (!std::isfinite(d)) {
    ctx_.error(path_of(key), "must be finite, got " + format_number(d));
    return std::nullopt;
  }
  if (auto bad = bounds.violation(d)) {
    ctx_.error(path_of(key), *bad + ", got " + format_number(d));
    return std::nullopt;
  }
  return d;
}

double ObjectReader::get_double(std::string_view key, double fallback, Bounds bounds) {
  const json* v = raw(key);
  if (v != nullptr && v->is_null()) {
    ctx_.error(path_of(key), "expected a number, got null");
    return fallback;
  }
  return get_optional_double(key, bounds).value_or(fallback);
}

std::string ObjectReader::get_string(std::string_view key, std::string fallback) {
  const json* v = value_for(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_string()) {
    ctx_.error(path_of(key), "expected a string, got " + describe(*v));
    return fallback;
  }
  return v->get<std::string>();
}

std::string ObjectReader::resolve_alias(std::string_view key, std::string_view alias) {
  const bool has_key = has(key);
  const bool has_alias = has(alias);
  if (has_key && has_alias) {
    ctx_.error(path_of(alias), "\"" + std::string(alias) + "\" and \"" + std::string(key) +
                                   "\" name the same setting; give only one");
  }
  return std::string(has_alias && !has_key ? alias : key);
}

ObjectReader ObjectReader::child(std::string_view key) {
  const json* v = raw(key);
  const std::string path = path_of(key);
  if (v != nullptr && !v->is_null() && !v->is_object()) {
    ctx_.error(path, "expected an object, got " + describe(*v));
    return ObjectReader(ctx_, path, nullptr);
  }
  return ObjectReader(ctx_, path, v);
}

void ObjectReader::unsupported_unless(std::string_view key, const json& default_value, std::string_view what) {
  const json* v = raw(key);
  if (v == nullptr || *v == default_value) return;
  ctx_.error(path_of(key), "not supported by zerotrain (" + std::string(what) + "); remove the key or set it to " +
                               default_value.dump());
}

}  // namespace zerotrain::config_detail
