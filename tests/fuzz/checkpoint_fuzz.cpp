// libFuzzer target: the checkpoint manifest parser and the safetensors header
// reader, the two parsers a checkpoint load runs on bytes from disk. The first
// input byte chooses the parser. Any input must either parse or be rejected
// with a c10::Error (TORCH_CHECK); any other exception, a crash, a hang or a
// sanitizer report is a finding. Built and run by scripts/fuzz.sh.

#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"

#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] & 1) {
      (void)zerotrain::ckpt::Manifest::parse(body, "fuzz/manifest.json");
    } else {
      // The reader takes a file: one per process, rewritten for each input.
      static const std::string path = "/tmp/zerotrain-fuzz-" + std::to_string(::getpid()) + ".safetensors";
      std::FILE* out = std::fopen(path.c_str(), "wb");
      if (out == nullptr) std::abort();
      std::fwrite(body.data(), 1, body.size(), out);
      std::fclose(out);
      const zerotrain::ckpt::InputFile f(path);
      (void)zerotrain::ckpt::read_safetensors_header(f);
    }
  } catch (const c10::Error&) {
  }
  return 0;
}
