// CommOptions from the config's `comm` section and the environment.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdlib>
#include <string>

namespace zerotrain {

namespace {
std::chrono::milliseconds seconds_to_ms(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
}
}  // namespace

CommOptions CommOptions::from_config(const Config& config) {
  CommOptions o;
  o.timeout = seconds_to_ms(config.comm().timeout_s);
  o.check_collectives = config.comm().check_collectives;
  return o;
}

CommOptions CommOptions::with_environment() const {
  CommOptions o = *this;
  if (const char* t = std::getenv("ZEROTRAIN_COMM_TIMEOUT"); t != nullptr && *t != '\0') {
    char* end = nullptr;
    const double s = std::strtod(t, &end);
    TORCH_CHECK(end != t && *end == '\0' && std::isfinite(s) && s > 0,
                "zerotrain: ZEROTRAIN_COMM_TIMEOUT='", t,
                "' must be a positive number of seconds");
    o.timeout = seconds_to_ms(s);
  }
  if (const char* c = std::getenv("ZEROTRAIN_CHECK_COLLECTIVES"); c != nullptr && *c != '\0') {
    const std::string v(c);
    TORCH_CHECK(v == "0" || v == "1", "zerotrain: ZEROTRAIN_CHECK_COLLECTIVES='", v,
                "' must be 0 or 1");
    o.check_collectives = v == "1";
  }
  return o;
}

}  // namespace zerotrain
