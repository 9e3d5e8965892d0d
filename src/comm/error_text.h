#pragma once
// One line of text from an exception, for composing zerotrain's own messages.

#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace zerotrain::comm_detail {

inline std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

/// The first line of `e`'s message; for a c10::Error, without LibTorch's backtrace.
inline std::string error_text(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) {
    return first_line(c->what_without_backtrace());
  }
  return first_line(e.what());
}

}  // namespace zerotrain::comm_detail
