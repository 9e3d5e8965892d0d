#pragma once
// Helpers shared by the tests: temporary files and running a command.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <sys/wait.h>

namespace zerotrain::testing {

/// A file under the system temp dir, removed when the object goes away.
class TempFile {
 public:
  explicit TempFile(const std::string& contents, const std::string& suffix = ".json") {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("zerotrain-test-" + std::to_string(rd()) + "-" + std::to_string(rd()) + suffix);
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs `command` through the shell, capturing stdout and stderr separately.
inline CommandResult run_command(const std::string& command) {
  TempFile out("", ".out"), err("", ".err");
  const std::string full = command + " >" + out.path() + " 2>" + err.path();
  const int status = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out.path());
  r.err = read_file(err.path());
  return r;
}

}  // namespace zerotrain::testing
