// Names, the error type and the accounting table of the communication layer.

#include <zerotrain/comm.h>

#include <iomanip>
#include <sstream>

namespace zerotrain {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
  }
  return "?";
}

const char* to_string(Collective c) {
  switch (c) {
    case Collective::kAllReduce: return "all_reduce";
    case Collective::kReduceScatter: return "reduce_scatter";
    case Collective::kAllGather: return "all_gather";
    case Collective::kBroadcast: return "broadcast";
    case Collective::kBarrier: return "barrier";
  }
  return "?";
}

CommError::CommError(const std::string& message, Collective op, uint64_t sequence,
                     std::vector<int> missing_ranks)
    : std::runtime_error(message),
      op_(op),
      sequence_(sequence),
      missing_ranks_(std::move(missing_ranks)) {}

int64_t CommStats::total_wire_bytes() const {
  int64_t total = 0;
  for (const auto& s : per_collective) total += s.wire_bytes;
  return total;
}

std::string CommStats::to_string() const {
  std::ostringstream out;
  out << "collective        calls    payload MB    wire MB   algorithm (world size " << world_size
      << ")\n";
  for (int i = 0; i < kNumCollectives; ++i) {
    const auto& s = per_collective[i];
    if (s.calls == 0) continue;
    out << std::left << std::setw(16) << zerotrain::to_string(static_cast<Collective>(i))
        << std::right << std::setw(7) << s.calls << std::fixed << std::setprecision(2)
        << std::setw(14) << s.payload_bytes / 1e6 << std::setw(11) << s.wire_bytes / 1e6 << "   "
        << s.algorithm << "\n";
  }
  return out.str();
}

}  // namespace zerotrain
