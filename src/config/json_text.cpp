#include "config/json_text.h"

#include <set>
#include <string>

#include "config/reader.h"

namespace zerotrain::config_detail {
namespace {

// Tracks the JSON path of the value being parsed, from the SAX-style events of
// nlohmann's parser callback, to name duplicate keys by their full path.
class PathTracker {
 public:
  explicit PathTracker(std::vector<ConfigProblem>& problems) : problems_(problems) {}

  bool on_event(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        frames_.push_back({true, next_child_path(), {}, {}, 0});
        break;
      case json::parse_event_t::array_start:
        frames_.push_back({false, next_child_path(), {}, {}, 0});
        break;
      case json::parse_event_t::key: {
        Frame& f = frames_.back();
        f.pending_key = parsed.get<std::string>();
        if (!f.keys.insert(f.pending_key).second) {
          problems_.push_back({child_path(f.path, f.pending_key),
                               "duplicate key \"" + f.pending_key + "\" (only one value can apply)"});
        }
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        element_done();
        break;
      case json::parse_event_t::value:
        element_done();
        break;
    }
    return true;  // keep every value
  }

 private:
  struct Frame {
    bool is_object;
    std::string path;
    std::set<std::string> keys;
    std::string pending_key;
    size_t index;
  };

  std::string next_child_path() const {
    if (frames_.empty()) return "";
    const Frame& f = frames_.back();
    return f.is_object ? child_path(f.path, f.pending_key) : index_path(f.path, f.index);
  }

  void element_done() {
    if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().index;
  }

  std::vector<ConfigProblem>& problems_;
  std::vector<Frame> frames_;
};

std::string line_and_column(std::string_view text, size_t byte) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

}  // namespace

json parse_config_text(std::string_view text, std::vector<ConfigProblem>& problems) {
  const size_t before = problems.size();
  PathTracker tracker(problems);
  json::parser_callback_t callback = [&tracker](int /*depth*/, json::parse_event_t event, json& parsed) {
    return tracker.on_event(event, parsed);
  };
  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 3, column 5: ..."
    std::string what = e.what();
    const auto colon = what.find("parse error");
    std::string detail = colon == std::string::npos ? what : what.substr(colon);
    if (detail.find("line") == std::string::npos) detail = line_and_column(text, e.byte) + ": " + detail;
    problems.push_back({"", "invalid JSON: " + detail});
    return json(json::value_t::discarded);
  } catch (const json::exception& e) {
    // Found by scripts/fuzz.sh: a number too large for a double (1e999) is an
    // out_of_range error, not a parse_error; it is still bad input.
    std::string what = e.what();
    const auto bracket = what.find("] ");
    problems.push_back({"", "invalid JSON: " + (bracket == std::string::npos ? what : what.substr(bracket + 2))});
    return json(json::value_t::discarded);
  }
  if (problems.size() != before) return json(json::value_t::discarded);
  return doc;
}

}  // namespace zerotrain::config_detail
