// libFuzzer target: the config parser (Config::from_string and resolution at
// several world sizes). Any input must either parse or be rejected with a
// ConfigError whose every problem names a JSON path ("" for the document
// itself); any other exception, a crash, a hang or a sanitizer report is a
// finding. Built and run by scripts/fuzz.sh (docs/reliability.md).

#include <zerotrain/config.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (int world : {1, 3}) {
    zerotrain::ResolveOptions o;
    o.world_size = world;
    try {
      const zerotrain::Config c = zerotrain::Config::from_string(text, o, "fuzz.json");
      (void)c.to_json_string();  // what the engine and checkpoints serialise
    } catch (const zerotrain::ConfigError& e) {
      if (e.problems().empty()) {
        std::fprintf(stderr, "ConfigError without a problem: %s\n", e.what());
        std::abort();
      }
      for (const zerotrain::ConfigProblem& p : e.problems())
        if (p.message.empty()) {
          std::fprintf(stderr, "a problem without a message at '%s'\n", p.path.c_str());
          std::abort();
        }
    }
    // Anything else propagates: libFuzzer reports an uncaught exception as a crash.
  }
  return 0;
}
