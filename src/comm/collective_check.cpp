// See Note [Checking collectives across ranks] in collective_check.h.

#include "comm/collective_check.h"

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
  store_->set(key_of(sequence, rank_), std::vector<uint8_t>(descriptor.begin(), descriptor.end()));

  std::vector<std::string> keys;
  for (int r = 0; r < world_size_; ++r) keys.push_back(key_of(sequence, r));
  try {
    store_->wait(keys, timeout_);
  } catch (const std::exception&) {
    std::vector<int> absent;
    for (int r = 0; r < world_size_; ++r) {
      try {
        if (!store_->check({keys[r]})) absent.push_back(r);
      } catch (const std::exception&) {
        break;  // the store is gone; the health diagnosis says so
      }
    }
    std::ostringstream msg;
    msg << "zerotrain comm: collective check for " << descriptor << " (#" << sequence
        << ") on rank " << rank_ << " of " << world_size_ << ": not every rank reached it within "
        << timeout_.count() / 1000.0 << " s; absent:";
    for (int r : absent) msg << " " << r;
    std::vector<int> missing = absent;
    if (health != nullptr) {
      health->report_failure(sequence);
      const Diagnosis d = health->diagnose(sequence);
      msg << d.text;
      if (absent.empty()) missing = d.missing;
    }
    throw CommError(msg.str(), op, sequence, missing);
  }

  const auto values = store_->multiGet(keys);
  bool match = true;
  for (const auto& v : values) match = match && std::string(v.begin(), v.end()) == descriptor;
  if (sequence > 2) store_->deleteKey(key_of(sequence - 2, rank_));
  if (match) return;

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
