#pragma once
// The `csv_monitor` and `tensorboard` sections: where events go on rank 0.

#include <zerotrain/config.h>
#include <zerotrain/monitor.h>

#include "monitor/tfevents.h"

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace zerotrain::monitor {

/// One CSV file per event name under a directory: `<name with '/' -> '_'>.csv`
/// with the header `step,<name>` (DeepSpeed's layout), appended to on resume.
class CsvMonitor {
 public:
  explicit CsvMonitor(std::string dir) : dir_(std::move(dir)) {}
  ~CsvMonitor();
  CsvMonitor(const CsvMonitor&) = delete;
  CsvMonitor& operator=(const CsvMonitor&) = delete;
  void write(const MonitorEvent& e);
  void flush();

 private:
  std::string dir_;
  std::map<std::string, std::FILE*> files_;
};

/// The enabled monitors of a run; empty on ranks other than 0.
class Monitors {
 public:
  /// Creates `<output_path or .>/<job_name>` for each enabled section; throws
  /// naming the section and path when that fails.
  Monitors(const LoggingConfig& logging, int rank);
  bool enabled() const { return csv_ != nullptr || tensorboard_ != nullptr; }
  /// Writes and flushes, so a killed run loses no event it reported.
  void write(const std::vector<MonitorEvent>& events);
  /// "csv: DIR, tensorboard: DIR" for the start-up message; empty when none.
  std::string describe() const;

 private:
  std::unique_ptr<CsvMonitor> csv_;
  std::unique_ptr<EventFileWriter> tensorboard_;
  std::string csv_dir_, tensorboard_dir_;
};

/// `a/b/c` as a file-name part: `a_b_c`.
std::string event_file_stem(const std::string& name);

}  // namespace zerotrain::monitor
