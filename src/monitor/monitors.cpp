// See monitors.h.

#include "monitor/monitors.h"

#include "checkpoint/file_io.h"  // make_directories, path_exists

#include <c10/util/Exception.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace zerotrain::monitor {
namespace {

std::string log_dir(const MonitorConfig& m, const char* section) {
  const std::string dir = (m.output_path.empty() ? std::string(".") : m.output_path) + "/" + m.job_name;
  try {
    ckpt::make_directories(dir);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "zerotrain: ", section, ".output_path: cannot create ", dir, ": ", e.what());
  }
  return dir;
}

}  // namespace

std::string event_file_stem(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (c == '/' || c == ' ') c = '_';
  return s;
}

CsvMonitor::~CsvMonitor() {
  for (auto& [name, f] : files_) std::fclose(f);
}

void CsvMonitor::write(const MonitorEvent& e) {
  auto it = files_.find(e.name);
  if (it == files_.end()) {
    const std::string path = dir_ + "/" + event_file_stem(e.name) + ".csv";
    const bool fresh = !ckpt::path_exists(path);
    std::FILE* f = std::fopen(path.c_str(), "a");
    TORCH_CHECK(f != nullptr, "zerotrain: csv_monitor: cannot open ", path, ": ", std::strerror(errno));
    if (fresh) std::fprintf(f, "step,%s\n", e.name.c_str());
    it = files_.emplace(e.name, f).first;
  }
  TORCH_CHECK(std::fprintf(it->second, "%lld,%.9g\n", static_cast<long long>(e.x), e.value) > 0,
              "zerotrain: csv_monitor: cannot write ", dir_, "/", event_file_stem(e.name),
              ".csv: ", std::strerror(errno));
}

void CsvMonitor::flush() {
  for (auto& [name, f] : files_)
    TORCH_CHECK(std::fflush(f) == 0, "zerotrain: csv_monitor: cannot write ", dir_, "/",
                event_file_stem(name), ".csv: ", std::strerror(errno));
}

Monitors::Monitors(const LoggingConfig& logging, int rank) {
  if (rank != 0) return;
  if (logging.csv_monitor.enabled) {
    csv_dir_ = log_dir(logging.csv_monitor, "csv_monitor");
    csv_ = std::make_unique<CsvMonitor>(csv_dir_);
  }
  if (logging.tensorboard.enabled) {
    tensorboard_dir_ = log_dir(logging.tensorboard, "tensorboard");
    tensorboard_ = std::make_unique<EventFileWriter>(tensorboard_dir_);
  }
}

void Monitors::write(const std::vector<MonitorEvent>& events) {
  if (!enabled() || events.empty()) return;
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const MonitorEvent& e : events) {
    if (csv_) csv_->write(e);
    if (tensorboard_) tensorboard_->add_scalar(e.name, e.value, e.x, now);
  }
  if (csv_) csv_->flush();
  if (tensorboard_) tensorboard_->flush();
}

std::string Monitors::describe() const {
  std::string s;
  if (csv_) s += "csv_monitor -> " + csv_dir_;
  if (tensorboard_) s += std::string(s.empty() ? "" : ", ") + "tensorboard -> " + tensorboard_->path();
  return s;
}

}  // namespace zerotrain::monitor
