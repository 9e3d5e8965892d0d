// See Note [Checking collectives across ranks] in collective_check.h.

#include "comm/collective_check.h"

#include "comm/error_text.h"
#include "comm/health.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <sstream>

namespace zerotrain::comm_detail {

namespace {
std::string key_of(uint64_t sequence, int rank) {
  return "check/" + std::to_string(sequence) + "/" + std::to_string(rank);
}
}  // namespace

CollectiveCheck::CollectiveCheck(c10::intrusive_ptr<c10d::Store> store, int rank, int world_size,
                                 std::chrono::milliseconds timeout)
    : store_(std::move(store)), rank_(rank), world_size_(world_size), timeout_(timeout) {}

CollectiveCheck::~CollectiveCheck() = default;

void CollectiveCheck::check(uint64_t sequence, Collective op, const std::string& descriptor,
                            Health* health) {
  if (world_size_ == 1) return;
  std::vector<std::string> keys;
  for (int r = 0; r < world_size_; ++r) keys.push_back(key_of(sequence, r));

  // Any store failure, or ranks that do not arrive in time, end up here.
  auto fail = [&](const std::string& why) {
    std::vector<int> absent;
    for (int r = 0; r < world_size_; ++r) {
      try {
        if (!store_->check({keys[r]})) absent.push_back(r);
      } catch (const std::exception&) {
        absent.clear();
        break;  // the store is gone; the health diagnosis says so
      }
    }
    std::ostringstream msg;
    msg << "zerotrain comm: collective check for " << descriptor << " on rank " << rank_ << " of "
        << world_size_ << " failed: " << why << "; not yet checked in:";
    for (int r : absent) msg << " " << r;
    if (absent.empty()) msg << " unknown";
    std::vector<int> missing = absent;
    if (health != nullptr) {
      health->report_failure(sequence);
      const Diagnosis d = health->diagnose(sequence);
      msg << d.text;
      if (absent.empty()) missing = d.missing;
    }
    throw CommError(msg.str(), op, sequence, missing);
  };

  std::vector<std::vector<uint8_t>> values;
  try {
    store_->set(key_of(sequence, rank_),
                std::vector<uint8_t>(descriptor.begin(), descriptor.end()));
    try {
      store_->wait(keys, timeout_);
    } catch (const std::exception&) {
      fail("not every rank reached it within " + std::to_string(timeout_.count() / 1000.0) + " s");
    }
    values = store_->multiGet(keys);
    if (sequence > 2) store_->deleteKey(key_of(sequence - 2, rank_));
  } catch (const CommError&) {
    throw;
  } catch (const std::exception& e) {
    fail("the store failed (" + error_text(e) + ")");
  }

  bool match = true;
  for (const auto& v : values) match = match && std::string(v.begin(), v.end()) == descriptor;
  if (match) return;

  // Every rank sees the same views and raises; the store host keeps the store
  // up until the others have read theirs (Health::linger_for_peers).
  if (health != nullptr) {
    health->report_failure(sequence);
    health->mark_diagnosed();
  }
  std::ostringstream msg;
  msg << "zerotrain comm: ranks disagree on collective #" << sequence
      << " (found by check_collectives before it was issued); each rank's view:";
  for (int r = 0; r < world_size_; ++r) {
    msg << "\n  rank " << r << ": " << std::string(values[r].begin(), values[r].end());
    if (r == rank_) msg << "   <- this rank";
  }
  throw CommError(msg.str(), op, sequence, {});
}

}  // namespace zerotrain::comm_detail
